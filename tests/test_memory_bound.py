"""Many distinct metric windows keep what the process holds of source answers, and of what is
derived from them, within HUB_CACHE_MAX_BYTES."""

from __future__ import annotations

import gc
from datetime import date, timedelta
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from hub.app import create_app
from hub.memo import IdentityMemo
from hub.resolvers import metrics as metric_resolvers
from hub.schema import metrics as metric_types
from hub.settings import Settings
from hub.simulators import SIMULATOR_NAMES, SimulatorConfig
from hub.simulators.transport import build_in_process_simulators
from hub.sizes import estimate_bytes
from hub.sources import discovery, social
from hub.sources.memory_cache import MemoryCache
from hub.store.seed import SeedPlan
from tests.conftest import MakeToken
from tests.helpers import codes, gql

BOUND = 8 * 1024 * 1024
WINDOW = """query ($from: Date!, $to: Date!) {
  influencers(first: 20) { edges { node { metrics(from: $from, to: $to) { date impressions } } } }
}"""
MEMOS: list[IdentityMemo[Any]] = [
    social._DECODED,
    metric_resolvers._ROLLED,
    metric_types._POINTS,
    discovery._PROFILES,
]


def unaccounted_bytes() -> int:
    """What the memos hold that no entry the cache still holds answers for."""
    gc.collect()
    for memo in MEMOS:
        len(memo)  # forgets the values of collected sources (each memo frees the next's)
    return sum(
        estimate_bytes(entry.value)
        for memo in MEMOS
        for entry in memo._entries.values()
        if getattr(entry.owner, "home", None) is None
    )


async def test_many_distinct_metric_windows_keep_the_source_memory_within_the_bound(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"cache_max_bytes": BOUND})
    plan = SeedPlan.demo()
    config = SimulatorConfig(seed=plan.seed, influencers=plan.influencers)
    sims = build_in_process_simulators(dict.fromkeys(SIMULATOR_NAMES, config))
    app = create_app(settings, transport=sims.transport)
    # An internal client: its budget pays for thirty windows (1,422 points each).
    token = make_token(roles=["analyst"], purpose="analytics", client_id="graphiql-demo")
    start = date(2025, 11, 1)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://hub.test"
        ) as client,
    ):
        cache = app.state.hub.upstreams.cache
        assert isinstance(cache, MemoryCache)
        held: list[int] = []
        for n in range(30):
            since = start + timedelta(days=3 * n)
            window = {"from": since.isoformat(), "to": (since + timedelta(days=59)).isoformat()}
            _, payload = await gql(client, WINDOW, token=token, variables=window)
            assert codes(payload) == [], payload
            edges = payload["data"]["influencers"]["edges"]
            assert len(edges) == 20 and len(edges[0]["node"]["metrics"]) == 60
            held.append(cache.entries.nbytes)
            del payload, edges
        # Thirty windows of 20 influencers' accounts would hold several times the bound.
        assert max(held) <= BOUND
        assert held[-1] > BOUND // 2
        assert unaccounted_bytes() <= 256 * 1024
        assert cache.entries.nbytes + unaccounted_bytes() <= BOUND + 256 * 1024
