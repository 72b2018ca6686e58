"""`hub cost FILE`: the explanation printed for a query."""

from __future__ import annotations

import yaml

from hub.cost_report import render_cost_report
from hub.policy.cost import parse_cost_policy
from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT

SCHEMA = build_schema(Settings())._schema
POLICY = parse_cost_policy(
    yaml.safe_load((ROOT / "policies" / "cost.yaml").read_text()), schema=SCHEMA
)
QUERY = """query Page($n: Int) {
  influencers(first: $n) { totalCount edges { node { handle accounts { platform } } } }
}"""


def test_the_report_shows_limits_total_breakdown_and_tiers() -> None:
    report = render_cost_report(
        SCHEMA, QUERY, policy=POLICY, variables={"n": 5}, roles=["analyst"], client_id="x"
    )
    lines = report.splitlines()
    assert lines[0] == "Operation: Page (query)"
    assert "Limits (roles analyst):" in lines
    assert "  depth                     5 / 12" in lines
    # 1 + totalCount 1 + edges 1 + 5 x (node 1 + accounts 1)
    assert "Estimated cost: 13 points" in lines
    rows = [line.split() for line in lines if line.endswith("edges.node.accounts.platform")]
    assert rows == [
        ["0", "30", "SocialAccount.platform", "influencers.edges.node.accounts.platform"]
    ]
    assert "Client x: tier standard, allowed" in lines


def test_a_query_over_a_limit_is_marked() -> None:
    query = "{ me { " + " ".join(f"a{n}: subject" for n in range(16)) + " } }"
    report = render_cost_report(SCHEMA, query, policy=POLICY)
    assert "  aliases                  16 / 15  OVER THE LIMIT" in report.splitlines()


def test_a_query_that_does_not_validate_or_cycles_is_explained() -> None:
    assert render_cost_report(SCHEMA, "{ nope }", policy=POLICY) == (
        "The query does not validate:\n  Cannot query field 'nope' on type 'Query'."
    )
    assert render_cost_report(SCHEMA, "{ me {", policy=POLICY).startswith("Refused: Syntax Error")


def test_the_report_gives_a_window_its_days_and_price_and_refuses_a_year_of_100() -> None:
    query = """{ influencers(first: 100) { edges { node {
      metrics(from: "2025-11-01", to: "2026-10-31") { date impressions } } } } }"""
    report = render_cost_report(SCHEMA, query, policy=POLICY, roles=["analyst"], client_id="bi")
    lines = report.splitlines()
    assert "Estimated cost: 37,602 points" in lines
    metrics = [line for line in lines if "Influencer.metrics" in line]
    assert metrics == [
        "      37,500       100  Influencer.metrics          influencers.edges.node.metrics"
        "  (365 days at 1 a day, each time)"
    ]
    assert "Client bi: tier standard, refused" in lines
