"""GraphiQL in a real headless Chromium: it mounts, shows the headers editor, stays local;
in the demo it opens with the example query and sends the demo token."""

import base64
import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # The browser's own background requests must not leave the machine either.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Puts the page's console messages on stderr, for the failure messages.
    "--enable-logging=stderr",
    "--virtual-time-budget=10000",
)
VENDORED_ASSETS = {
    "graphiql.min.css",
    "graphiql.min.js",
    "react.production.min.js",
    "react-dom.production.min.js",
}
BROWSER_TIMEOUT_S = 120.0


class _StartTags(HTMLParser):
    """Collects every start tag of a document with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def _start_tags(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _StartTags()
    parser.feed(html)
    parser.close()
    return parser.tags


def _page_requests(netlog_path: Path, origin: str) -> list[tuple[str, str]]:
    """Return (method, url) of the requests that the page itself started, from a NetLog."""
    netlog: dict[str, Any] = json.loads(netlog_path.read_text(encoding="utf-8"))
    start_job = netlog["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = []
    for event in netlog["events"]:
        params = event.get("params", {})
        if event["type"] != start_job or "url" not in params:
            continue
        # Chromium's own traffic (updates, accounts) has no page origin as its initiator.
        if params.get("initiator") == origin or params.get("request_type") == "main frame":
            requests.append((params["method"], params["url"]))
    return requests


def _sent_authorizations(netlog_path: Path) -> list[str]:
    """The `Authorization` header values of every request in a NetLog (IncludeSensitive)."""
    netlog: dict[str, Any] = json.loads(netlog_path.read_text(encoding="utf-8"))
    send_headers = netlog["constants"]["logEventTypes"]["HTTP_TRANSACTION_SEND_REQUEST_HEADERS"]
    return [
        line.split(":", 1)[1].strip()
        for event in netlog["events"]
        if event["type"] == send_headers
        for line in event.get("params", {}).get("headers", [])
        if line.lower().startswith("authorization:")
    ]


def _claims(authorization: str) -> dict[str, Any]:
    payload = authorization.removeprefix("Bearer ").split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.fixture
def browser() -> str:
    path = os.environ.get("HUB_TEST_BROWSER")
    if not path:
        pytest.skip(
            "HUB_TEST_BROWSER is unset; set it to a Chromium binary, e.g. /usr/bin/chromium"
        )
    return path


def test_demo_graphiql_mounts_with_its_token_and_example_and_loads_nothing_from_outside(
    live_server: str, browser: str, tmp_path: Path
) -> None:
    netlog_path = tmp_path / "netlog.json"
    result = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--log-net-log={netlog_path}",
            "--net-log-capture-mode=IncludeSensitive",
            "--dump-dom",
            f"{live_server}/graphql",
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"chromium failed:\n{result.stderr[-4000:]}"

    tags = _start_tags(result.stdout)
    classes = [set(attrs.get("class", "").split()) for _, attrs in tags]
    console = "\n".join(line for line in result.stderr.splitlines() if ":CONSOLE" in line)
    assert any("graphiql-container" in names for names in classes), (
        f"GraphiQL did not mount; the page's console:\n{console or '(nothing)'}"
    )
    headers_editors = [
        attrs
        for tag, attrs in tags
        if tag == "section"
        and attrs.get("aria-label") == "Headers"
        and "graphiql-editor-tool" in attrs.get("class", "").split()
    ]
    assert len(headers_editors) == 1, "GraphiQL shows no headers editor"
    assert "hidden" not in headers_editors[0]["class"].split(), "the headers editor is hidden"

    requests = _page_requests(netlog_path, origin=live_server)
    outside = [url for _, url in requests if urlsplit(url).hostname != "127.0.0.1"]
    assert outside == [], f"the page fetched from outside 127.0.0.1: {outside}"
    fetched_files = {urlsplit(url).path.rsplit("/", 1)[-1] for _, url in requests}
    assert fetched_files >= VENDORED_ASSETS, f"vendored assets not all fetched: {requests}"
    assert ("POST", f"{live_server}/graphql") in requests, "GraphiQL never POSTed a query"

    # The demo's page: the example query in the editor, the demo token in the Headers tab,
    # and the token on what the page sends (GraphiQL's schema fetch).
    assert "DemoCampaigns" in result.stdout
    sent = _sent_authorizations(netlog_path)
    assert sent, "GraphiQL sent no Authorization header"
    assert {_claims(value)["client_id"] for value in sent} == {"graphiql-demo"}
