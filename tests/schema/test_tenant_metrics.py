"""`Query.metrics` without a campaign or an influencer: the tenant's kept days, page by page
from the store, bounded by the caller's tenant and campaigns, pulled incrementally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from hub import metric_history
from hub.ingest import accounts_to_ingest
from hub.metric_history import store_days
from hub.settings import Settings
from hub.sources.social import MetricRecord
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

ROWS = """query ($filter: MetricsFilter!, $first: Int, $after: String) {
  metrics(filter: $filter, first: $first, after: $after) {
    totalCount
    edges { cursor node { date influencerId platform impressions } }
    pageInfo { hasNextPage endCursor } } }"""
DAYS = [date(2026, 4, 1) + timedelta(days=n) for n in range(3)]
KEPT_AT = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)


def record(account: str, day: date, impressions: int) -> MetricRecord:
    return MetricRecord(account, day, impressions, 1, 1, 1, 1, 1, 1, 1, 1, 0)


@pytest.fixture
async def kept(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """Three days of every account, kept in the store; nothing from the social API."""
    async with running_app(settings) as (app, client):
        store = app.state.hub.store
        accounts = await accounts_to_ingest(store, None)
        records = [record(a, day, 100 + n) for n, a in enumerate(accounts) for day in DAYS]
        await store_days(store, records, observed_at=KEPT_AT, now=KEPT_AT)
        yield app, client


async def pull(
    client: httpx.AsyncClient, token: str, filter_: dict[str, Any], *, first: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """Every row, page by page, and the total the first page gave."""
    rows: list[dict[str, Any]] = []
    after = None
    total = None
    while True:
        _, payload = await gql(
            client, ROWS, token=token, variables={"filter": filter_, "first": first, "after": after}
        )
        assert "errors" not in payload, payload["errors"]
        page = payload["data"]["metrics"]
        total = page["totalCount"] if total is None else total
        rows += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return rows, total
        after = page["pageInfo"]["endCursor"]


async def _members(app: Starlette, tenant: str) -> set[str]:
    return set(await accounts_to_ingest(app.state.hub.store, tenant))


async def test_a_tenant_pulls_the_kept_days_of_its_campaign_members_only(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    analyst = make_token(roles=["analyst"], purpose="analytics")
    window = {"from": "2026-04-01", "to": "2026-04-03"}
    rows, total = await pull(client, analyst, window, first=25)
    acme = await _members(app, "acme")
    assert total == len(rows) == 3 * len(acme) > 25  # several pages
    assert len({(r["date"], r["influencerId"], r["platform"]) for r in rows}) == len(rows)
    _, globex = await pull(client, make_token(tenant="globex", roles=["analyst"]), window)
    assert globex == 3 * len(await _members(app, "globex"))
    assert [row["date"] for row in rows] == sorted(row["date"] for row in rows)


async def test_a_token_limited_to_a_campaign_pulls_only_its_members(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    _app, client = kept
    manager = make_token()
    _, found = await gql(
        client,
        "{ campaigns(first: 1) { edges { node { id members(first: 100) { edges { node {"
        " influencer { id accounts { platform } } } } } } } } }",
        token=manager,
    )
    campaign = found["data"]["campaigns"]["edges"][0]["node"]
    members = {edge["node"]["influencer"]["id"] for edge in campaign["members"]["edges"]}
    accounts = sum(
        len(edge["node"]["influencer"]["accounts"]) for edge in campaign["members"]["edges"]
    )
    partner = make_token(roles=["analyst"], campaigns=[campaign["id"]])
    rows, total = await pull(client, partner, {"from": "2026-04-01", "to": "2026-04-01"})
    assert {row["influencerId"] for row in rows} == members
    assert total == len(rows) == accounts


async def test_updated_since_pulls_only_what_was_kept_after_it(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    analyst = make_token(roles=["analyst"])
    store = app.state.hub.store
    accounts = sorted(await _members(app, "acme"))[:2]
    later = KEPT_AT + timedelta(hours=1)
    changed = [record(a, DAYS[1], 999) for a in accounts]
    await store_days(store, changed, observed_at=later, now=later)
    since = (KEPT_AT + timedelta(minutes=30)).isoformat()
    rows, total = await pull(client, analyst, {"updatedSince": since})
    assert total == len(rows) == len(accounts)
    assert {row["impressions"] for row in rows} == {999}
    assert {row["date"] for row in rows} == {DAYS[1].isoformat()}
    nothing, _ = await pull(client, analyst, {"updatedSince": later.isoformat()})
    assert nothing == []


async def test_a_day_kept_this_instant_waits_for_the_next_pull(
    kept: tuple[Starlette, httpx.AsyncClient], make_token: MakeToken
) -> None:
    app, client = kept
    store = app.state.hub.store
    account = sorted(await _members(app, "acme"))[0]
    now = datetime.now(UTC)
    await store_days(store, [record(account, DAYS[2], 4242)], observed_at=now, now=now)
    since = (now - timedelta(minutes=1)).isoformat()
    analyst = make_token(roles=["analyst"])
    settling, _ = await pull(client, analyst, {"updatedSince": since})
    assert settling == []  # a write may still be committing with an earlier time
    await store_days(
        store,
        [record(account, DAYS[2], 4343)],
        observed_at=now,
        now=now - metric_history.SETTLE - timedelta(seconds=1),
    )
    settled, _ = await pull(client, analyst, {"updatedSince": since})
    assert [row["impressions"] for row in settled] == [4343]


@pytest.mark.parametrize(
    ("variables", "argument"),
    [
        ({"filter": {"updatedSince": "0001-01-01T00:00:00+01:00"}}, "filter.updatedSince"),
        (
            {"filter": {"from": "2026-04-01", "to": "2026-04-03"}, "granularity": "WEEK"},
            "granularity",
        ),
        ({"filter": {"from": "2026-04-01", "to": "2026-04-03"}, "after": "bm90LW91cnM"}, "after"),
        ({"filter": {"from": "2026-04-01", "to": "2026-04-03"}, "after": "bTI6eHx5"}, "after"),
    ],
)
async def test_a_tenant_pull_it_cannot_answer_is_bad_user_input(
    kept: tuple[Starlette, httpx.AsyncClient],
    make_token: MakeToken,
    variables: dict[str, Any],
    argument: str,
) -> None:
    _app, client = kept
    query = """query ($filter: MetricsFilter!, $granularity: Granularity, $after: String) {
      metrics(filter: $filter, granularity: $granularity, after: $after) { totalCount } }"""
    _, payload = await gql(client, query, token=make_token(roles=["analyst"]), variables=variables)
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == argument
