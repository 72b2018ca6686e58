"""Logs: one JSON line per GraphQL request, request ids on every line, no personal value."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import structlog
from sqlmodel import select
from starlette.applications import Starlette

from hub.observability.logs import configure_logging
from hub.settings import DEV_SOURCE_CREDENTIAL, Settings
from hub.simulators import RunningSimulators
from hub.store.tables import ContactRow
from tests.conftest import ROOT, TEST_SECRET, CapturedLogs, MakeToken, running_app
from tests.helpers import codes

ACCOUNTS = """query Accounts { influencers(first: 3) {
  edges { node { id accounts { username followers } } } } }"""
CONTACTS = """query Contacts { influencers(first: 100) {
  edges { node { contacts { id fullName email phone } } } } }"""


@pytest.fixture
async def app_and_client(tmp_path: Path) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The demo app with its simulators over real HTTP; no retries, so a failing source
    fails at once."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=True,
        source_retries=0,
    )
    async with running_app(settings) as pair:
        yield pair


async def post(
    client: httpx.AsyncClient,
    query: str,
    *,
    request_id: str,
    token: str | None = None,
    variables: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Request-Id": request_id, "Accept": "application/graphql-response+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, Any] = {"query": query, "variables": variables}
    response = await client.post("/graphql", json=body, headers=headers)
    payload: dict[str, Any] = response.json()
    return response.status_code, payload


async def fault(app: Starlette, source: str, mode: str) -> None:
    simulators = cast(RunningSimulators, app.state.hub.upstreams.simulators)
    async with httpx.AsyncClient(base_url=simulators.urls[source]) as control:
        (await control.post("/_control/fault", json={"mode": mode})).raise_for_status()


async def test_a_graphql_request_ends_with_one_json_line_of_what_it_was(
    app_and_client: tuple[Starlette, httpx.AsyncClient],
    json_logs: CapturedLogs,
    make_token: MakeToken,
) -> None:
    _app, client = app_and_client
    token = make_token(client_id="bi-tool", tenant="globex")
    status, payload = await post(client, ACCOUNTS, request_id="req-accounts", token=token)
    assert status == 200 and "errors" not in payload, payload

    line = json_logs.request("req-accounts")
    assert line["operation"] == "Accounts"
    assert line["client_id"] == "bi-tool"
    assert line["tenant"] == "globex"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["cost"] == payload["extensions"]["cost"]["actualQueryCost"] > 0
    assert line["sources"] == ["social"]
    assert line["codes"] == []
    assert line["level"] == "info" and line["logger"] == "hub.requests"
    assert line["timestamp"].endswith("Z")


async def test_refusals_and_errors_are_logged_with_their_status_and_codes(
    app_and_client: tuple[Starlette, httpx.AsyncClient],
    json_logs: CapturedLogs,
    make_token: MakeToken,
) -> None:
    _app, client = app_and_client
    await post(client, "{ __typename }", request_id="req-bad-token", token="not.a.token")
    await post(client, "{ nothing }", request_id="req-invalid", token=make_token(client_id="bi"))
    await post(client, "query Me { __typename }", request_id="req-anonymous")
    await client.get("/healthz", headers={"X-Request-Id": "req-health"})

    bad_token = json_logs.request("req-bad-token")
    assert (bad_token["status"], bad_token["codes"]) == (401, ["UNAUTHENTICATED"])
    assert bad_token["client_id"] is None and bad_token["cost"] is None
    assert bad_token["operation"] == "anonymous"
    invalid = json_logs.request("req-invalid")
    assert (invalid["status"], invalid["codes"]) == (400, ["GRAPHQL_VALIDATION_FAILED"])
    assert invalid["client_id"] == "bi" and invalid["sources"] == []
    anonymous = json_logs.request("req-anonymous")
    assert (anonymous["status"], anonymous["codes"], anonymous["operation"]) == (200, [], "Me")
    assert anonymous["client_id"] == "anonymous" and anonymous["tenant"] is None
    # Only GraphQL requests have a request line.
    assert not [line for line in json_logs.requests() if line["request_id"] == "req-health"]


async def test_every_line_logged_during_a_request_carries_its_request_id(
    app_and_client: tuple[Starlette, httpx.AsyncClient],
    json_logs: CapturedLogs,
    make_token: MakeToken,
) -> None:
    app, client = app_and_client
    await fault(app, "social", "5xx")
    status, payload = await post(client, ACCOUNTS, request_id="req-down", token=make_token())
    assert status == 200 and "SOURCE_UNAVAILABLE" in codes(payload)
    logging.getLogger("hub.elsewhere").warning("between requests")

    lines = json_logs.lines()
    source_failures = [line for line in lines if line["logger"] == "hub.sources"]
    assert source_failures, json_logs.text
    assert {line.get("request_id") for line in source_failures} == {"req-down"}
    assert json_logs.request("req-down")["codes"] == ["SOURCE_UNAVAILABLE"]
    assert json_logs.request("req-down")["sources"] == ["social"]
    between = [line for line in lines if line["event"] == "between requests"]
    assert len(between) == 1 and "request_id" not in between[0]


async def test_no_personal_value_token_or_secret_reaches_the_log(
    app_and_client: tuple[Starlette, httpx.AsyncClient],
    json_logs: CapturedLogs,
    make_token: MakeToken,
) -> None:
    app, client = app_and_client
    manager = make_token(purpose="campaign_management")
    analyst = make_token(purpose="analytics")
    async with app.state.hub.store.sessions() as session:
        contacts = (await session.scalars(select(ContactRow))).all()
    personal = {
        value
        for contact in contacts
        for value in (contact.full_name, contact.email, contact.phone)
        if value
    }
    assert len(personal) > 30

    # Consented reads: some contacts' real values are in the answer.
    _, read = await post(client, CONTACTS, request_id="req-read", token=manager)
    answered = {
        contact[name]
        for edge in read["data"]["influencers"]["edges"]
        for contact in edge["node"]["contacts"]
        for name in ("fullName", "email", "phone")
    }
    assert answered & personal, "no consented value was read: the test would prove nothing"
    # Refused consents, a write with new personal values, a refused one, a failing source.
    _, refused = await post(client, CONTACTS, request_id="req-refused", token=analyst)
    assert "CONSENT_REQUIRED" in codes(refused)
    new = {"email": "zofia.testowa@example.org", "fullName": "Zofia Testowa", "phone": "+48 601"}
    upsert = "mutation ($input: ContactInput!) { upsertContact(input: $input) { id email } }"
    await post(client, upsert, request_id="req-write", token=manager, variables={"input": new})
    bad = {**new, "email": "zenon.zly@example.org", "phone": "call Zenon Zly"}
    _, refused_write = await post(
        client, upsert, request_id="req-bad-write", token=manager, variables={"input": bad}
    )
    assert codes(refused_write) == ["BAD_USER_INPUT"]
    await fault(app, "crm", "5xx")
    await fault(app, "social", "malformed")
    await post(client, CONTACTS, request_id="req-crm-down", token=manager)
    await post(client, ACCOUNTS, request_id="req-social-bad", token=manager)
    await client.get(
        "/graphql",
        params={"query": CONTACTS, "variables": json.dumps({"email": "zenon.zly@example.org"})},
        headers={"Authorization": f"Bearer {manager}", "X-Request-Id": "req-get"},
    )

    # A caller whose token names no client: its subject (here an address) is not logged.
    person = make_token(subject="ana.kowalska@example.com", client_id=None)
    _, mine = await post(client, "{ me { subject } }", request_id="req-person", token=person)
    assert mine["data"]["me"]["subject"] == "ana.kowalska@example.com"

    text = json_logs.text
    assert len(json_logs.requests()) == 8
    caller = next(line for line in json_logs.requests() if line["request_id"] == "req-person")
    assert caller["client_id"].startswith("sub:") and "ana" not in text
    leaked = sorted(value for value in personal | set(new.values()) if value in text)
    assert leaked == []
    for value in ("zenon.zly@example.org", "Zenon Zly", manager, analyst):
        assert value not in text
    assert TEST_SECRET not in text and DEV_SOURCE_CREDENTIAL not in text
    assert "eyJ" not in text  # no JWT at all, whoever's


def test_stdlib_structlog_and_uvicorn_lines_share_one_json_format(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/graphql?variables=x", "1.1", 200
    )
    structlog.get_logger("hub.structured").info("counted", things=3)
    logging.getLogger("httpx").info("HTTP Request: GET http://upstream/v1?ids=1")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("hub.app").exception("unexpected error")

    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert [line["logger"] for line in lines] == [
        "uvicorn.error",
        "uvicorn.access",
        "hub.structured",
        "hub.app",
    ]
    started, request, counted, failed = lines
    assert started["event"] == "Started server process [42]"
    assert started["level"] == "info"
    assert request["event"] == "http request"
    assert (request["method"], request["path"], request["status"]) == ("GET", "/graphql", 200)
    assert "variables" not in err
    assert (counted["event"], counted["things"]) == ("counted", 3)
    assert failed["level"] == "error"
    assert "Traceback" in failed["exception"] and "RuntimeError: boom" in failed["exception"]


def test_the_console_format_writes_lines_for_people(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("console")
    logging.getLogger("hub.app").warning("store unreachable")
    line = capsys.readouterr().err.strip()
    assert "store unreachable" in line and "warning" in line and "hub.app" in line
    with pytest.raises(ValueError):
        json.loads(line)
