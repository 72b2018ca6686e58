"""`hub serve`'s own output: uvicorn's lines and the hub's in one JSON format on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.e2e.conftest import running_hub


def test_hub_serve_writes_every_stderr_line_as_one_json_object(tmp_path: Path) -> None:
    env = {"HUB_LOG_FORMAT": "json", "HUB_ACCESS_LOG": "true"}
    with running_hub(tmp_path, env=env) as (_process, base_url):
        health = httpx.get(f"{base_url}/healthz", params={"probe": "secret-probe"})
        answer = httpx.post(
            f"{base_url}/graphql",
            json={"query": "query Typename { __typename }"},
            headers={"X-Request-Id": "e2e-logs-1"},
        )
    assert health.status_code == 200 and answer.status_code == 200

    text = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "timestamp" in line for line in lines)
    events = {(line["logger"], line["event"]) for line in lines}
    assert ("uvicorn.error", "Application startup complete.") in events
    assert ("hub.app", "demo data loaded") in events
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert {(line["path"], line["status"]) for line in access} >= {
        ("/healthz", 200),
        ("/graphql", 200),
    }
    assert "secret-probe" not in text
    # uvicorn writes its access line from within the request: it carries the request's id.
    assert [line["request_id"] for line in access if line["path"] == "/graphql"] == ["e2e-logs-1"]
    [request] = [line for line in lines if line.get("event") == "graphql request"]
    assert request["request_id"] == "e2e-logs-1"
    assert (request["operation"], request["status"], request["client_id"]) == (
        "Typename",
        200,
        "anonymous",
    )
