"""The hub's metrics: bounded labels, and each count made once on every path."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.observability.metrics import Metrics, OperationLabels, known_codes
from hub.persisted import trusted_names
from hub.settings import Settings
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

REQUESTS = "hub_graphql_requests_total"


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Each sample of `name` in an exposition, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_ten_thousand_operation_names_make_at_most_the_bound_of_series() -> None:
    metrics = Metrics(registered_operations={"CampaignList"}, max_operations=50)
    for n in range(10_000):
        metrics.record_request(f"Op{n}", status=200, answered=True, codes=(), seconds=0.01)
    metrics.record_request("CampaignList", status=200, answered=True, codes=(), seconds=0.01)
    metrics.record_request(None, status=200, answered=True, codes=(), seconds=0.01)
    text = metrics.render().decode()
    requests = series(text, REQUESTS)
    operations = {dict(labels)["operation"] for labels in requests}
    assert len(operations) == 50 + 3  # the first 50, `other`, the registered one, `anonymous`
    assert {"Op0", "Op49", "other", "CampaignList", "anonymous"} <= operations
    assert "Op50" not in operations
    assert requests[(("operation", "other"), ("outcome", "ok"))] == 10_000 - 50
    durations = series(text, "hub_graphql_request_duration_seconds_count")
    assert len(durations) == 53
    assert sum(durations.values()) == 10_002


@pytest.mark.parametrize(
    ("name", "label"),
    [
        (None, "anonymous"),
        ("", "anonymous"),
        ("Me", "Me"),  # registered: kept although the bound is 0
        ("Fresh", "other"),
        ("x" * 101, "other"),
        ("not a name", "other"),
    ],
)
def test_an_operation_label_is_a_registered_name_a_counted_name_or_a_fixed_word(
    name: str | None, label: str
) -> None:
    assert OperationLabels({"Me"}, max_seen=0).label(name) == label


def test_long_or_malformed_names_never_take_a_place_among_the_first_names() -> None:
    labels = OperationLabels((), max_seen=1)
    assert labels.label("bad-name") == "other"
    assert labels.label("y" * 101) == "other"
    assert labels.label("Good") == "Good"
    assert labels.label("Later") == "other"
    assert labels.label("Good") == "Good"


def test_registered_operations_are_the_named_operations_of_the_trusted_documents() -> None:
    documents = ["query A { me { subject } } query B { me { tenant } }", "{ me { subject } }"]
    manifest = {str(n): text for n, text in enumerate([*documents, "query Broken {"])}
    assert set(trusted_names(manifest)) == {"A", "B"}


def test_codes_and_consent_labels_outside_their_vocabulary_are_other() -> None:
    metrics = Metrics(consent_fields={"Contact.email"})
    metrics.record_request(
        "Q", status=200, answered=True, codes=["NOT_FOUND", "MADE_UP"], seconds=0.1
    )
    metrics.record_consent_decision("Contact.email", "masked")
    metrics.record_consent_decision("Contact.secret", "allowed")
    metrics.record_consent_decision("Contact.email", "shrugged")
    metrics.record_cost_rejection("because")
    assert metrics.value("hub_graphql_errors_total", code="NOT_FOUND") == 1
    assert metrics.value("hub_graphql_errors_total", code="other") == 1
    assert metrics.value("hub_graphql_errors_total", code="MADE_UP") == 0
    decisions = "hub_consent_decisions_total"
    assert metrics.value(decisions, field="Contact.email", decision="masked") == 1
    assert metrics.value(decisions, field="other", decision="allowed") == 1
    assert metrics.value(decisions, field="Contact.email", decision="other") == 1
    assert metrics.value("hub_cost_rejections_total", reason="other") == 1


def test_the_known_codes_are_the_error_trees_and_graphql_cores() -> None:
    found = known_codes()
    assert {"INTERNAL_SERVER_ERROR", "SOURCE_TIMEOUT", "THROTTLED", "BAD_REQUEST"} <= found
    assert {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"} <= found


def test_each_app_counts_in_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.record_audit_dropped(3)
    assert first.value("hub_audit_events_dropped_total") == 3
    assert second.value("hub_audit_events_dropped_total") == 0


CONTACTS = """query Contacts { campaigns(first: 3) { edges { node { members(first: 10) {
  edges { node { influencer { contacts { id email } } } } } } } } }"""
EXPENSIVE = """query Huge { influencers(first: 100) { edges { node { campaigns(first: 100) {
  edges { node { members(first: 100) { edges { node { id } } } } } } } } } }"""


def _emails(value: Any) -> list[str | None]:
    if isinstance(value, dict):
        own = [value["email"]] if "email" in value else []
        return own + [e for v in value.values() for e in _emails(v)]
    if isinstance(value, list):
        return [e for item in value for e in _emails(item)]
    return []


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "graphql-core"])
async def test_requests_errors_cost_refusals_and_consent_are_counted_once_on_each_executor(
    sqlite_settings: Settings, make_token: MakeToken, planned: bool
) -> None:
    settings = sqlite_settings.model_copy(update={"engine_enabled": planned})
    token = make_token(client_id="bi")
    analyst = make_token(client_id="bi", purpose="analytics")
    async with running_app(settings) as (_app, client):
        _, managed = await gql(client, CONTACTS, token=token)  # masks without consent
        _, analysed = await gql(client, CONTACTS, token=analyst)  # redacts without consent
        status, refused = await gql(client, EXPENSIVE, token=token)
        _, unparsed = await gql(client, "query Broken {", token=token)
        await gql(client, "{ me { subject } }", token=token)
        text = (await client.get("/metrics")).text
    assert status == 400 and codes(refused) == ["COST_ESTIMATED_TOO_EXPENSIVE"]
    assert codes(unparsed) == ["GRAPHQL_PARSE_FAILED"]
    emails = _emails(managed["data"]) + _emails(analysed["data"])
    redacted = [e for e in analysed.get("errors", []) if e["path"][-1] == "email"]
    masked = [e for e in emails if e is not None and "*" in e]
    allowed = [e for e in emails if e is not None and "*" not in e]
    assert redacted and masked and allowed, "the demo data has every decision"
    assert "errors" not in managed
    decisions = series(text, "hub_consent_decisions_total")
    assert decisions == {
        (("decision", "allowed"), ("field", "Contact.email")): len(allowed),
        (("decision", "masked"), ("field", "Contact.email")): len(masked),
        (("decision", "redacted"), ("field", "Contact.email")): len(redacted),
    }
    assert series(text, REQUESTS) == {
        (("operation", "Contacts"), ("outcome", "ok")): 1,
        (("operation", "Contacts"), ("outcome", "partial")): 1,
        (("operation", "Huge"), ("outcome", "refused")): 1,
        (("operation", "anonymous"), ("outcome", "refused")): 1,  # nothing parsed, no name
        (("operation", "anonymous"), ("outcome", "ok")): 1,
    }
    assert series(text, "hub_graphql_errors_total") == {
        (("code", "CONSENT_REQUIRED"),): len(redacted),
        (("code", "COST_ESTIMATED_TOO_EXPENSIVE"),): 1,
        (("code", "GRAPHQL_PARSE_FAILED"),): 1,
    }
    assert series(text, "hub_cost_rejections_total") == {(("reason", "max_query_cost"),): 1}
    assert (
        series(text, "hub_graphql_request_duration_seconds_count")[(("operation", "anonymous"),)]
        == 2
    )
    if planned:  # nothing was handed over to graphql-core
        assert series(text, "hub_engine_fallbacks_total") == {}


async def test_refusals_before_graphql_runs_are_counted_with_their_code(
    sqlite_settings: Settings,
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        bad_token = await client.post(
            "/graphql",
            json={"query": "query Me { me { subject } }", "operationName": "Me"},
            headers={"Authorization": "Bearer nonsense"},
        )
        bad_json = await client.post(
            "/graphql", content=b"{", headers={"Content-Type": "application/json"}
        )

        async def broken(_header: str | None) -> None:
            raise RuntimeError("boom")

        app.state.hub.authenticator.authenticate = broken
        crashed = await client.post("/graphql", json={"query": "{ __typename }"})
        metrics: Metrics = app.state.hub.metrics
    assert (bad_token.status_code, bad_json.status_code, crashed.status_code) == (401, 400, 500)
    assert metrics.value(REQUESTS, operation="Me", outcome="refused") == 1
    assert metrics.value(REQUESTS, operation="anonymous", outcome="refused") == 1
    assert metrics.value(REQUESTS, operation="anonymous", outcome="error") == 1
    for code in ("UNAUTHENTICATED", "BAD_REQUEST", "INTERNAL_SERVER_ERROR"):
        assert metrics.value("hub_graphql_errors_total", code=code) == 1


async def test_names_past_the_bound_share_the_other_series_over_http(
    sqlite_settings: Settings,
) -> None:
    settings = sqlite_settings.model_copy(update={"metrics_max_operations": 2})
    async with running_app(settings) as (_app, client):
        for n in range(6):
            await gql(client, f"query Ping{n} {{ __typename }}")
        await gql(client, "query Me { __typename }")  # a trusted document's name
        text = (await client.get("/metrics")).text
    assert series(text, REQUESTS) == {
        (("operation", "Ping0"), ("outcome", "ok")): 1,
        (("operation", "Ping1"), ("outcome", "ok")): 1,
        (("operation", "other"), ("outcome", "ok")): 4,
        (("operation", "Me"), ("outcome", "ok")): 1,
    }


async def test_metrics_are_served_in_the_prometheus_text_format(
    sqlite_client: httpx.AsyncClient,
) -> None:
    response = await sqlite_client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert re.search(r"^hub_audit_events_dropped_total 0\.0$", response.text, re.M)
    assert "# TYPE hub_graphql_request_duration_seconds histogram" in response.text
    assert "_created" not in response.text


async def test_a_circuit_another_replica_opened_shows_at_the_next_scrape(
    sqlite_settings: Settings,
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        breaker = app.state.hub.sources.clients["crm"].breaker
        before = series((await client.get("/metrics")).text, "hub_source_circuit_open")
        breaker.trip()  # what the shared circuits do when another replica opened it
        tripped = series((await client.get("/metrics")).text, "hub_source_circuit_open")
        breaker.untrip()
        after = series((await client.get("/metrics")).text, "hub_source_circuit_open")
    crm = (("source", "crm"),)
    assert (before[crm], tripped[crm], after[crm]) == (0, 1, 0)
    assert tripped[(("source", "social"),)] == 0
