"""Traces: the span tree of a request, what goes upstream, and what never goes anywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id
from starlette.applications import Starlette

from hub.errors import SourceUnavailable
from hub.observability import tracing
from hub.settings import DEV_SOURCE_CREDENTIAL, Settings, SettingsError
from hub.sources.http import SourceClient
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import gql
from tests.sources.upstream import Upstream, json_answer, make_client

DASHBOARD = """
query Dashboard($id: ID!, $from: Date!, $to: Date!) {
  campaign(id: $id) {
    name
    totals(from: $from, to: $to) { impressions }
    members(first: 20) { edges { node { influencer {
      handle
      accounts { username followers }
      audience { countries { code share } }
      metrics(from: $from, to: $to, granularity: WEEK) { date impressions }
      contacts { role company }
    } } } }
  }
}
"""
WINDOW = {"from": "2026-03-01", "to": "2026-03-30"}


def simulator_urls(app: Starlette) -> dict[str, str]:
    urls: dict[str, str] = app.state.hub.upstreams.simulators.urls
    return urls


async def first_campaign(client: httpx.AsyncClient, token: str) -> str:
    query = "{ campaigns(first: 1) { edges { node { id } } } }"
    _, payload = await gql(client, query, token=token)
    campaign_id: str = payload["data"]["campaigns"]["edges"][0]["node"]["id"]
    return campaign_id


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_dashboard_request_is_one_trace_of_request_operation_sources_and_statements(
    spans: InMemorySpanExporter, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    token = make_token()
    async with running_app(sqlite_settings) as (_app, client):
        campaign_id = await first_campaign(client, token)
        spans.clear()
        response = await client.post(
            "/graphql",
            json={"query": DASHBOARD, "variables": {"id": campaign_id, **WINDOW}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    payload = response.json()
    assert "errors" not in payload
    influencers = [e["node"]["influencer"] for e in payload["data"]["campaign"]["members"]["edges"]]
    accounts = sum(len(influencer["accounts"]) for influencer in influencers)

    finished = spans.get_finished_spans()
    [server] = [span for span in finished if span.kind is SpanKind.SERVER]
    assert server.parent is None
    assert server.name == "POST /graphql"
    assert attributes_of(server)["http.route"] == "/graphql"
    assert attributes_of(server)["http.response.status_code"] == 200
    assert attributes_of(server)["hub.request_id"] == response.headers["x-request-id"]
    trace_id = server.context.trace_id
    in_trace = [span for span in finished if span.context.trace_id == trace_id]

    [operation] = [span for span in in_trace if span.name == "Dashboard"]
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    assert attributes_of(operation)["graphql.operation.name"] == "Dashboard"
    assert attributes_of(operation)["graphql.operation.type"] == "query"
    cost = payload["extensions"]["cost"]
    assert attributes_of(operation)["hub.cost.requested"] == cost["requestedQueryCost"]
    assert attributes_of(operation)["hub.cost.actual"] == cost["actualQueryCost"]

    calls = [span for span in finished if "hub.source.name" in attributes_of(span)]
    by_kind = {attributes_of(span)["hub.source.kind"]: attributes_of(span) for span in calls}
    assert {a["hub.source.name"] for a in by_kind.values()} == {"social", "discovery", "crm"}
    assert by_kind["profile"]["hub.source.batch_size"] == len(influencers)
    assert by_kind["account"]["hub.source.batch_size"] == accounts
    assert by_kind["metric-rows"]["hub.source.batch_size"] == accounts
    assert by_kind["account"]["http.request.method"] == "GET"
    assert {a["hub.source.outcome"] for a in by_kind.values()} == {"success"}
    assert all(span.kind is SpanKind.CLIENT for span in calls)

    statements = [span for span in in_trace if "db.statement" in attributes_of(span)]
    tables = " ".join(str(attributes_of(span)["db.statement"]) for span in statements)
    assert "FROM campaigns" in tables and "FROM contacts" in tables
    assert campaign_id not in tables  # parameters stay out: the id went in as `?`
    assert {attributes_of(span)["db.system"] for span in statements} == {"sqlite"}

    for child in [*calls, *statements]:
        assert child.context.trace_id == trace_id
        assert child.parent is not None and child.parent.span_id == operation.context.span_id
    assert len(in_trace) == 2 + len(calls) + len(statements)


TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
"""W3C trace context: version 00, trace id, parent id, flags (level 2 adds a "random" bit)."""


@pytest.fixture
def no_exporter() -> Iterator[None]:
    """The provider the hub makes when no exporter is configured."""
    provider = tracing.build_provider({})
    previous = tracing.install(provider)
    yield
    tracing.install(previous)


async def upstream_headers(app: Starlette) -> dict[str, dict[str, str]]:
    """The trace headers of the last call each simulator received."""
    seen = {}
    async with httpx.AsyncClient() as client:
        for name, url in simulator_urls(app).items():
            last = (await client.get(f"{url}/_control/last-request")).json()
            seen[name] = last["headers"]
    return seen


async def reset_simulators(app: Starlette) -> None:
    async with httpx.AsyncClient() as client:
        for url in simulator_urls(app).values():
            (await client.post(f"{url}/_control/reset")).raise_for_status()


@pytest.mark.parametrize("given", [False, True], ids=["new trace", "caller's trace"])
async def test_every_upstream_gets_a_valid_traceparent_and_the_request_id_the_hub_answered(
    no_exporter: None, sqlite_settings: Settings, make_token: MakeToken, given: bool
) -> None:
    token = make_token()
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"Authorization": f"Bearer {token}"}
    if given:
        headers["traceparent"] = f"00-{caller_trace}-{caller_span}-01"
        headers["X-Request-Id"] = "dashboard-check-1"
    async with running_app(sqlite_settings) as (app, client):
        campaign_id = await first_campaign(client, token)
        await reset_simulators(app)
        response = await client.post(
            "/graphql",
            json={"query": DASHBOARD, "variables": {"id": campaign_id, **WINDOW}},
            headers=headers,
        )
        assert response.status_code == 200
        seen = await upstream_headers(app)
    request_id = response.headers["x-request-id"]
    if given:
        assert request_id == "dashboard-check-1"
    assert set(seen) == {"social", "discovery", "crm"}
    trace_ids = set()
    for name, received in seen.items():
        assert received.get("x-request-id") == request_id, name
        match = TRACEPARENT.match(received.get("traceparent", ""))
        assert match is not None, (name, received)
        assert match[1] != "0" * 32 and match[2] != "0" * 16
        assert match[2] != caller_span  # the parent upstream is the hub's source call
        trace_ids.add(match[1])
    assert len(trace_ids) == 1
    if given:
        assert trace_ids == {caller_trace}


@pytest.mark.parametrize("exporting", [False, True], ids=["no exporter", "an exporter"])
async def test_statements_are_spans_only_for_a_provider_that_exports_them(
    sqlite_settings: Settings,
    make_token: MakeToken,
    monkeypatch: pytest.MonkeyPatch,
    exporting: bool,
) -> None:
    exporter = InMemorySpanExporter()
    provider = tracing.build_provider({})
    if exporting:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = tracing.install(provider)
    made: list[str] = []
    start = tracing._start_statement_span

    def counted(attributes: dict[str, Any], statement: str) -> Any:
        made.append(statement)
        return start(attributes, statement)

    monkeypatch.setattr(tracing, "_start_statement_span", counted)
    query = "{ influencers(first: 2) { edges { node { handle accounts { username } } } } }"
    try:
        async with running_app(sqlite_settings) as (_app, client):
            made.clear()  # start-up's statements
            status, payload = await gql(client, query, token=make_token())
    finally:
        tracing.install(previous)
    assert status == 200 and len(payload["data"]["influencers"]["edges"]) == 2
    tables = " ".join(made)
    if exporting:
        assert "FROM influencers" in tables and "FROM platform_accounts" in tables
    else:
        assert made == []


async def test_with_the_sdk_disabled_upstreams_still_get_the_callers_traceparent(
    monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    previous = tracing.install(tracing.build_provider(os.environ))
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    try:
        token = make_token()
        async with running_app(sqlite_settings) as (app, client):
            campaign_id = await first_campaign(client, token)
            await reset_simulators(app)
            response = await client.post(
                "/graphql",
                json={"query": DASHBOARD, "variables": {"id": campaign_id, **WINDOW}},
                headers={"Authorization": f"Bearer {token}", "traceparent": traceparent},
            )
            seen = await upstream_headers(app)
    finally:
        tracing.install(previous)
    assert response.status_code == 200
    assert {received["traceparent"] for received in seen.values()} == {traceparent}


class Collector:
    """An OTLP/HTTP endpoint that counts what it is sent."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                self.rfile.read(length)
                collector.posts.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.close()


def emit_one_span(provider: TracerProvider) -> None:
    provider.get_tracer("test").start_span("one").end()
    provider.force_flush()
    provider.shutdown()


def test_nothing_configured_creates_no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("an exporter was created")

    monkeypatch.setattr(tracing, "OTLPSpanExporter", refuse)
    monkeypatch.setattr(tracing, "ConsoleSpanExporter", refuse)
    assert tracing.exporters_from({}) == []
    assert tracing.exporters_from({"OTEL_SERVICE_NAME": "hub-a"}) == []
    emit_one_span(tracing.build_provider({}))


def test_an_otlp_endpoint_exports_and_none_or_a_disabled_sdk_sends_nothing(
    collector: Collector,
) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    for environ in (
        {**endpoint, "OTEL_TRACES_EXPORTER": "none"},
        {**endpoint, "OTEL_SDK_DISABLED": "true"},
    ):
        assert tracing.exporters_from(environ) == []
        emit_one_span(tracing.build_provider(environ))
    assert collector.posts == []
    emit_one_span(tracing.build_provider(endpoint))
    assert collector.posts == ["/v1/traces"]
    traces_endpoint = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/custom"}
    emit_one_span(tracing.build_provider({**traces_endpoint, "OTEL_TRACES_EXPORTER": "otlp"}))
    assert collector.posts == ["/v1/traces", "/custom"]


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "'zipkin'"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc'"),
    ],
)
def test_an_exporter_the_hub_cannot_make_is_a_settings_error(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        tracing.exporters_from(environ)


def test_serve_refuses_an_unknown_traces_exporter_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--demo", "--port", "0"],
        env={
            "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
            "HUB_POLICIES_DIR": str(ROOT / "policies"),
            "OTEL_TRACES_EXPORTER": "jaeger",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hub: OTEL_TRACES_EXPORTER names 'jaeger'; the hub exports traces to otlp, console or none"
    ]


UPSERT = """mutation ($input: ContactInput!) { upsertContact(input: $input) { id } }"""
GRANT = """mutation ($id: ID!) { grantConsent(contactId: $id,
  purpose: "campaign_management", source: "test") { status } }"""
READ = "query Read($id: ID!) { contact(id: $id) { fullName email phone } }"
CRM_CONTACTS = """{ influencers(first: 50) { edges { node {
  contacts { fullName email phone company } } } } }"""


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def recorded_text(span: ReadableSpan) -> str:
    """Everything a span would export as text: name, attributes, events, status."""
    parts = [span.name, span.status.description or "", repr(dict(span.attributes or {}))]
    for recorded in span.events:
        parts += [recorded.name, repr(dict(recorded.attributes or {}))]
    parts.append(repr(dict(span.resource.attributes)))
    return "\n".join(parts)


async def test_no_span_holds_a_personal_value_a_token_or_a_credential(
    spans: InMemorySpanExporter, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    token = make_token()
    person = {
        "email": "Ola.Trace@Example.com",
        "fullName": "Ola Tracewska",
        "phone": "+48 600 123 456",
    }
    async with running_app(sqlite_settings) as (_app, client):
        _, created = await gql(client, UPSERT, token=token, variables={"input": person})
        contact_id = created["data"]["upsertContact"]["id"]
        _, granted = await gql(client, GRANT, token=token, variables={"id": contact_id})
        assert granted["data"]["grantConsent"]["status"] == "GRANTED"
        read = await client.get(
            "/graphql",
            # Whatever else the URL carries stays out of the spans too.
            params={
                "query": READ,
                "variables": json.dumps({"id": contact_id}),
                "ref": person["email"],
            },
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        _, listed = await gql(client, CRM_CONTACTS, token=token)
    assert read.json()["data"]["contact"] == person
    personal = set(person.values()) | {
        value
        for edge in listed["data"]["influencers"]["edges"]
        for contact in edge["node"]["contacts"]
        for key, value in contact.items()
        if key != "company" and isinstance(value, str)
    }
    assert len(personal) > len(person)  # the CRM's contacts were read too
    finished = spans.get_finished_spans()
    assert any(span.name == "Read" for span in finished)
    assert any(attributes_of(span).get("hub.source.name") == "crm" for span in finished)
    text = "\n".join(recorded_text(span) for span in finished)
    secrets = {token, TEST_SECRET, DEV_SOURCE_CREDENTIAL, "Bearer"}
    for value in personal | secrets:
        for form in {value, quote(value), quote_plus(value)}:  # as it was sent, or in a URL
            assert form not in text, form
    assert "?" in text  # statements carry placeholders where the values were


async def test_a_source_call_records_its_retries_as_events_and_its_outcome(
    spans: InMemorySpanExporter,
) -> None:
    flaky = Upstream(json_answer({}, status=503), json_answer({"contacts": []}))
    down = Upstream(json_answer({}, status=503))
    async with make_client(flaky) as client:
        found = await client.load_many(
            "contact", ["c1", "c2", "c1"], fetch_with(client), tenant="t"
        )
    assert found == {}
    async with make_client(down) as client:
        with pytest.raises(SourceUnavailable):
            await client.get_json("/v1/contacts")
    first, second = spans.get_finished_spans()
    assert first.name == "crm GET"
    assert attributes_of(first)["hub.source.batch_size"] == 2
    assert attributes_of(first)["hub.source.outcome"] == "success"
    assert [event.name for event in first.events] == ["retry"]
    assert first.status.status_code is StatusCode.UNSET
    assert "hub.source.batch_size" not in attributes_of(second)
    assert attributes_of(second)["hub.source.outcome"] == "server_error"
    assert [event.name for event in second.events] == ["retry", "retry"]
    assert second.status.status_code is StatusCode.ERROR
    assert len(down.requests) == 3
    assert down.requests[0].headers["traceparent"] == down.requests[2].headers["traceparent"]
    assert format_span_id(second.context.span_id) in down.requests[0].headers["traceparent"]


def fetch_with(client: SourceClient) -> Any:
    async def fetch(ids: list[str]) -> dict[str, Any]:
        answer: dict[str, Any] = await client.get_json("/v1/contacts", {"ids": ",".join(ids)})
        return answer

    return fetch
