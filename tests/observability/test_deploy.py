"""deploy/: the Prometheus alert rules and the Grafana dashboard name only series the hub
exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hub.settings import Settings
from tests.conftest import ROOT, MakeToken, running_app
from tests.helpers import gql

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hub.json"
SUFFIXES = ("_bucket", "_sum", "_count", "_total")
FUNCTIONS = frozenset(
    {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "label_values"}
)
"""The PromQL functions and aggregations the files use; a new one is added here."""
KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool"})
TRAFFIC = """{ influencers(first: 3) { edges { node { handle accounts { followers }
  audience { interests } contacts { company email } } } } }"""


def series_names(expression: str) -> set[str]:
    """The series an expression reads: what is left once strings, label matchers, ranges,
    grouping clauses, numbers, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set(re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*", text))
    return names - FUNCTIONS - KEYWORDS


def alert_expressions() -> Iterator[tuple[str, str]]:
    document = yaml.safe_load(ALERTS.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule
            assert rule["labels"]["severity"] in ("page", "ticket")
            yield rule["alert"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"{panel['title']} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            yield f"${variable['name']}", query["query"] if isinstance(query, dict) else query


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="b}"}[5m]))) > 1e-9',
            {"a_bucket"},
        ),
        ("max by (source) (b) == 1 and c offset 1h", {"b", "c"}),
        ("label_values(d_total, operation)", {"d_total"}),
        ("sum(rate(e[$__rate_interval])) / rat(f)", {"e", "f", "rat"}),
    ],
)
def test_series_names_are_read_out_of_an_expression(expression: str, names: set[str]) -> None:
    assert series_names(expression) == names


async def test_every_series_in_the_alerts_and_the_dashboard_is_one_the_hub_exports(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (_app, client):
        _, answer = await gql(client, TRAFFIC, token=make_token())
        assert answer["data"]["influencers"]["edges"]
        await gql(client, "{ nope }")
        text = (await client.get("/metrics")).text
    families = {family.name for family in text_string_to_metric_families(text)}
    samples = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert "hub_source_calls_total" in samples and "hub_graphql_errors_total" in samples

    def exported(name: str) -> bool:
        return name in families | samples or any(
            name.endswith(suffix) and name.removesuffix(suffix) in families for suffix in SUFFIXES
        )

    used: dict[str, set[str]] = {}
    for where, expression in [*alert_expressions(), *dashboard_expressions()]:
        for name in series_names(expression):
            used.setdefault(name, set()).add(where)
    unknown = {name: sorted(places) for name, places in used.items() if not exported(name)}
    assert unknown == {}
    alerted = {name for _, expression in alert_expressions() for name in series_names(expression)}
    assert {
        "hub_graphql_requests_total",
        "hub_graphql_request_duration_seconds_bucket",
        "hub_graphql_errors_total",
        "hub_audit_events_dropped_total",
        "hub_source_circuit_open",
        "hub_cost_rejections_total",
    } <= alerted
