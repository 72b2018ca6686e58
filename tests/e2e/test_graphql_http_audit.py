"""The graphql-http server audit suite, run against the real server."""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.auth import issue_token
from hub.settings import Settings

AUDIT_SCRIPT = Path(__file__).with_name("audit.mjs")


def _describe(detail: dict[str, Any]) -> str:
    line = f"[{detail['status']}] {detail['name']}: {detail['reason']}"
    response = detail.get("response")
    if response:
        line += f"\n    got HTTP {response['status']} {response['contentType']}: {response['body']}"
    return line


def test_graphql_over_http_audit_reports_no_errors_and_no_warnings(
    live_server: str, run_node: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # An analyst of the demo tenant: some audits introspect, which anonymous callers may not.
    token = issue_token(Settings(), subject="audit", tenant="acme", roles=["analyst"])
    result = run_node(AUDIT_SCRIPT, f"{live_server}/graphql", token)
    assert result.returncode == 0, f"audit.mjs failed:\n{result.stderr}"
    summary: dict[str, Any] = json.loads(result.stdout)
    failing = [d for d in summary["details"] if d["status"] in ("warn", "error")]
    counts = {"errors": summary["errors"], "warnings": summary["warnings"]}
    assert counts == {"errors": 0, "warnings": 0}, (
        f"{counts}, {summary['ok']} ok; failing audits:\n"
        + "\n".join(_describe(detail) for detail in failing)
    )
    assert summary["ok"] > 0
