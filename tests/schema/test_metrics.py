"""Metric fields over a fake social metrics API: rollups, batching, ranges, scoping, failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from hub.errors import SourceUnavailable
from hub.settings import Settings
from hub.sources.registry import Sources
from hub.sources.social import AccountRecord, MetricRecord
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql


@dataclass
class FakeSocial:
    """Every account: 100 impressions, 1 like, 2 clicks and 10 minor units of spend a day."""

    fail: bool = False
    calls: list[tuple[tuple[str, ...], date, date]] = field(default_factory=list)

    async def accounts(self, external_ids: Sequence[str]) -> dict[str, AccountRecord]:
        return {}

    async def daily_metrics(
        self, external_ids: Sequence[str], since: date, until: date
    ) -> dict[str, list[MetricRecord]]:
        self.calls.append((tuple(external_ids), since, until))
        if self.fail:
            raise SourceUnavailable("social")
        days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
        return {
            id_: [MetricRecord(id_, day, 100, 80, 1, 0, 0, 0, 0, 2, 0, 10) for day in days]
            for id_ in external_ids
        }


@pytest.fixture
async def social_client(sqlite_settings: Settings) -> AsyncIterator[tuple[FakeSocial, Any]]:
    fake = FakeSocial()
    async with running_app(sqlite_settings) as (app, client):
        app.state.hub.sources = Sources(social=fake)
        yield fake, client


FIRST_CAMPAIGN = """{ campaigns(first: 1) { edges { node { id budget { currency }
  members(first: 100) { totalCount edges { node { influencer { id accounts { id } } } } } } } } }"""


async def _campaign(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    _, payload = await gql(client, FIRST_CAMPAIGN, token=token)
    node: dict[str, Any] = payload["data"]["campaigns"]["edges"][0]["node"]
    return node


def _accounts(campaign: dict[str, Any]) -> int:
    return sum(len(edge["node"]["influencer"]["accounts"]) for edge in campaign["members"]["edges"])


async def test_influencer_metrics_roll_up_by_iso_week(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    fake, client = social_client
    token = make_token()
    member = (await _campaign(client, token))["members"]["edges"][0]["node"]["influencer"]
    query = """query ($id: ID!) { influencer(id: $id) { metrics(from: "2026-03-04",
      to: "2026-03-15", granularity: WEEK) { date granularity impressions engagements clicks
      engagementRate spend { amount } cpc { amount } } } }"""
    _, payload = await gql(client, query, token=token, variables={"id": member["id"]})
    accounts = len(member["accounts"])
    assert accounts > 0
    points = payload["data"]["influencer"]["metrics"]
    # Wed 4..Sun 8 March is 5 days of the week of Monday 2 March; 9..15 is a full week.
    assert [(p["date"], p["impressions"], p["clicks"]) for p in points] == [
        ("2026-03-02", 5 * 100 * accounts, 5 * 2 * accounts),
        ("2026-03-09", 7 * 100 * accounts, 7 * 2 * accounts),
    ]
    assert {p["granularity"] for p in points} == {"WEEK"}
    assert points[1]["engagementRate"] == pytest.approx(0.01)
    assert points[1]["spend"] is None  # an influencer alone has no currency to read spend in
    assert len(fake.calls) == 1


async def test_campaign_metrics_sum_every_member_in_one_upstream_call(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    fake, client = social_client
    token = make_token()
    campaign = await _campaign(client, token)
    fake.calls.clear()
    query = """query ($id: ID!) { campaign(id: $id) {
      metrics(from: "2026-03-01", to: "2026-03-31", granularity: MONTH) {
        date impressions spend { amount currency } cpm { amount } cpc { amount } }
      totals(from: "2026-03-01", to: "2026-03-02") { from to impressions clicks }
      members(first: 100) { edges { node { influencer {
        metrics(from: "2026-03-01", to: "2026-03-31") { impressions } } } } } } }"""
    _, payload = await gql(client, query, token=token, variables={"id": campaign["id"]})
    accounts = _accounts(campaign)
    found = payload["data"]["campaign"]
    [month] = found["metrics"]
    assert month["date"] == "2026-03-01"
    assert month["impressions"] == 31 * 100 * accounts
    assert Decimal(month["spend"]["amount"]) == Decimal(31 * 10 * accounts) / 100
    budget = campaign["budget"] or {"currency": month["spend"]["currency"]}
    assert month["spend"]["currency"] == budget["currency"]
    # Costs keep two places below the minor unit: 1 per mille, 0.05 a click.
    assert (month["cpm"]["amount"], month["cpc"]["amount"]) == ("1.0000", "0.0500")
    assert found["totals"] == {
        "from": "2026-03-01",
        "to": "2026-03-02",
        "impressions": 2 * 100 * accounts,
        "clicks": 2 * 2 * accounts,
    }
    # Two windows (March, and 1..2 March): one batched call each, whatever the member count.
    assert sorted((since, until) for _, since, until in fake.calls) == [
        (date(2026, 3, 1), date(2026, 3, 2)),
        (date(2026, 3, 1), date(2026, 3, 31)),
    ]


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ('from: "2026-03-02", to: "2026-03-01"', "to"),
        ('from: "2025-01-01", to: "2026-01-02"', "to"),
    ],
)
async def test_bad_ranges_are_bad_user_input_naming_the_argument(
    social_client: tuple[FakeSocial, httpx.AsyncClient],
    make_token: MakeToken,
    arguments: str,
    argument: str,
) -> None:
    fake, client = social_client
    token = make_token()
    campaign = await _campaign(client, token)
    query = f'{{ campaign(id: "{campaign["id"]}") {{ name metrics({arguments}) {{ date }} }} }}'
    _, payload = await gql(client, query, token=token)
    assert payload["data"]["campaign"]["metrics"] is None
    assert payload["data"]["campaign"]["name"]
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument
    assert fake.calls == []


async def test_a_failing_social_source_nulls_only_the_metrics(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    fake, client = social_client
    fake.fail = True
    token = make_token()
    campaign = await _campaign(client, token)
    query = f"""{{ campaign(id: "{campaign["id"]}") {{ name
      metrics(from: "2026-03-01", to: "2026-03-07") {{ date }} }} }}"""
    _, payload = await gql(client, query, token=token)
    assert payload["data"]["campaign"]["name"]
    assert payload["data"]["campaign"]["metrics"] is None
    assert codes(payload) == ["SOURCE_UNAVAILABLE"]
    assert payload["errors"][0]["path"] == ["campaign", "metrics"]


ROWS = """query ($filter: MetricsFilter!, $first: Int, $after: String) {
  metrics(filter: $filter, first: $first, after: $after) { totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { date influencerId platform impressions } } } }"""


async def test_query_metrics_pages_per_account_rows_in_the_callers_campaign(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    _, client = social_client
    token = make_token()
    campaign = await _campaign(client, token)
    window = {"campaignId": campaign["id"], "from": "2026-03-01", "to": "2026-03-03"}
    variables: dict[str, Any] = {"filter": window, "first": 4}
    _, payload = await gql(client, ROWS, token=token, variables=variables)
    rows = payload["data"]["metrics"]
    assert rows["totalCount"] == 3 * _accounts(campaign)
    assert rows["pageInfo"]["hasNextPage"] is True
    seen = [edge["node"] for edge in rows["edges"]]
    variables["after"] = rows["pageInfo"]["endCursor"]
    variables["first"] = 100
    _, payload = await gql(client, ROWS, token=token, variables=variables)
    seen += [edge["node"] for edge in payload["data"]["metrics"]["edges"]]
    keys = [(row["date"], row["influencerId"], row["platform"]) for row in seen]
    assert len(keys) == rows["totalCount"]
    assert keys == sorted(set(keys))
    assert {row["impressions"] for row in seen} == {100}


async def test_query_metrics_of_another_tenants_campaign_are_empty(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    fake, client = social_client
    campaign = await _campaign(client, make_token(tenant="acme"))
    fake.calls.clear()
    window = {"campaignId": campaign["id"], "from": "2026-03-01", "to": "2026-03-03"}
    _, payload = await gql(
        client, ROWS, token=make_token(tenant="globex"), variables={"filter": window}
    )
    assert payload["data"]["metrics"]["totalCount"] == 0
    assert payload["data"]["metrics"]["edges"] == []
    assert fake.calls == []


@pytest.mark.parametrize(
    ("window", "argument"),
    [
        ({}, "filter.from"),
        ({"to": "2026-03-03"}, "filter.from"),
        ({"updatedSince": "2026-03-01T00:00:00"}, "filter.updatedSince"),
        (
            {
                "campaignId": "x",
                "from": "2026-03-01",
                "to": "2026-03-03",
                "updatedSince": "2026-03-01T00:00:00Z",
            },
            "filter.updatedSince",
        ),
        ({"campaignId": "x", "to": "2026-03-03"}, "filter.from"),
        ({"influencerId": "nope", "from": "2026-03-01", "to": "2026-03-03"}, "filter.influencerId"),
    ],
)
async def test_query_metrics_refuses_an_unusable_filter(
    social_client: tuple[FakeSocial, httpx.AsyncClient],
    make_token: MakeToken,
    window: dict[str, str],
    argument: str,
) -> None:
    _, client = social_client
    _, payload = await gql(client, ROWS, token=make_token(), variables={"filter": window})
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument


async def test_metrics_need_the_metrics_scope(
    social_client: tuple[FakeSocial, httpx.AsyncClient], make_token: MakeToken
) -> None:
    _, client = social_client
    token = make_token(roles=["dpo"])
    window = {"influencerId": "x", "from": "2026-03-01", "to": "2026-03-03"}
    _, payload = await gql(client, ROWS, token=token, variables={"filter": window})
    assert codes(payload) == ["FORBIDDEN"]
    assert payload["errors"][0]["extensions"]["coordinate"] == "Query.metrics"


ADD_MEMBER = """mutation ($c: ID!, $i: ID!) {
  addCampaignMember(campaignId: $c, influencerId: $i) { id } }"""


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ('startsOn: "2026-05-01", endsOn: "2026-05-10"', ("2026-05-01", "2026-05-10", 10)),
        ("", None),
    ],
)
async def test_totals_default_to_the_campaigns_dates(
    social_client: tuple[FakeSocial, httpx.AsyncClient],
    make_token: MakeToken,
    dates: str,
    expected: tuple[str, str, int] | None,
) -> None:
    _, client = social_client
    token = make_token()
    influencer = (await _campaign(client, token))["members"]["edges"][0]["node"]["influencer"]
    _, created = await gql(
        client,
        f'mutation {{ createCampaign(input: {{name: "T", brand: "B", {dates}}}) {{ id }} }}',
        token=token,
    )
    campaign_id = created["data"]["createCampaign"]["id"]
    await gql(
        client,
        ADD_MEMBER,
        token=token,
        variables={"c": campaign_id, "i": influencer["id"]},
    )
    query = "query ($id: ID!) { campaign(id: $id) { totals { from to impressions } } }"
    _, payload = await gql(client, query, token=token, variables={"id": campaign_id})
    totals = payload["data"]["campaign"]["totals"]
    if expected is None:
        assert totals is None
        assert codes(payload) == ["BAD_USER_INPUT"]
        assert payload["errors"][0]["extensions"]["argument"] == "from"
    else:
        since, until, days = expected
        impressions = days * 100 * len(influencer["accounts"])
        assert totals == {"from": since, "to": until, "impressions": impressions}
