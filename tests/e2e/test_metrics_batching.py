"""Social upstream calls per dashboard query do not grow with the campaign's member count."""

from __future__ import annotations

from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from hub.app import create_app
from hub.settings import Settings
from hub.simulators import SIMULATOR_NAMES, SimulatorConfig
from hub.simulators.transport import build_in_process_simulators
from hub.sources.social import MAX_IDS
from hub.store.seed import SeedPlan
from tests.conftest import MakeToken
from tests.helpers import codes, gql

DASHBOARD = """query ($id: ID!, $from: Date!, $to: Date!) { campaign(id: $id) {
  metrics(from: $from, to: $to, granularity: WEEK) { date impressions }
  members(first: 100) { totalCount edges { node { influencer { accounts { id }
    metrics(from: $from, to: $to) { impressions } } } } } } }"""


async def _campaign_with(client: httpx.AsyncClient, token: str, influencer_ids: list[str]) -> str:
    _, payload = await gql(
        client,
        'mutation { createCampaign(input: {name: "Batch", brand: "B", '
        'budget: {amount: "1000", currency: "EUR"}}) { id } }',
        token=token,
    )
    campaign_id: str = payload["data"]["createCampaign"]["id"]
    for influencer_id in influencer_ids:
        _, added = await gql(
            client,
            "mutation ($c: ID!, $i: ID!) { addCampaignMember(campaignId: $c, influencerId: $i)"
            " { id } }",
            token=token,
            variables={"c": campaign_id, "i": influencer_id},
        )
        assert "errors" not in added, added
    return campaign_id


async def _social_calls(simulators: httpx.AsyncClient) -> int:
    stats: dict[str, Any] = (await simulators.get("/_control/stats")).json()
    return int(stats["calls"].get("/v2/metrics:batchGet", 0))


async def test_social_calls_per_query_stay_constant_from_5_to_50_members(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    plan = SeedPlan.demo()
    config = SimulatorConfig(seed=plan.seed, influencers=plan.influencers)
    sims = build_in_process_simulators({name: config for name in SIMULATOR_NAMES})
    app = create_app(sqlite_settings, transport=sims.transport)
    token = make_token()
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://hub.test"
        ) as client,
        httpx.AsyncClient(transport=sims.transport, base_url=sims.urls["social"]) as social,
    ):
        _, listed = await gql(
            client, "{ influencers(first: 50) { edges { node { id } } } }", token=token
        )
        ids = [edge["node"]["id"] for edge in listed["data"]["influencers"]["edges"]]
        calls: dict[int, tuple[int, int]] = {}
        # A different window per campaign, so that no answer comes from the cache.
        for size, window in ((5, ("2026-03-01", "2026-03-31")), (50, ("2026-04-01", "2026-04-30"))):
            campaign_id = await _campaign_with(client, token, ids[:size])
            before = await _social_calls(social)
            _, payload = await gql(
                client,
                DASHBOARD,
                token=token,
                variables={"id": campaign_id, "from": window[0], "to": window[1]},
            )
            assert codes(payload) == [], payload
            members = payload["data"]["campaign"]["members"]
            assert members["totalCount"] == size
            accounts = sum(len(e["node"]["influencer"]["accounts"]) for e in members["edges"])
            assert payload["data"]["campaign"]["metrics"][0]["impressions"] > 0
            calls[size] = (await _social_calls(social) - before, accounts)
    # Both fit one upstream batch (at most MAX_IDS accounts): one call each, 8 or 93 accounts.
    assert calls[5][1] < calls[50][1] <= MAX_IDS
    assert calls[5][0] == calls[50][0] == 1
