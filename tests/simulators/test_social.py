"""The social metrics simulator: the seeded accounts, daily metrics paged and in one batch."""

from __future__ import annotations

import time
from typing import Any

from hub.simulators import SimulatorConfig, create_social_app
from hub.store.seed import SeedPlan, influencer_rows
from tests.simulators.conftest import OpenClient

SINCE, UNTIL = "2026-03-01", "2026-03-10"


def _seeded_accounts(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    rows = influencer_rows(SeedPlan(influencers=150, seed=seed))
    return [account for _row, accounts in rows for account in accounts][:count]


async def test_accounts_are_the_seeded_platform_accounts(open_client: OpenClient) -> None:
    client = open_client(create_social_app(SimulatorConfig()))
    seeded = _seeded_accounts(12)
    ids = [account["external_id"] for account in seeded]
    response = await client.get("/v2/accounts", params={"ids": ",".join([*ids, "in000000000000"])})
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(a["account_id"], a["platform"], a["username"]) for a in data] == [
        (a["external_id"], a["platform"], a["username"]) for a in seeded
    ]
    for account in data:
        assert account["followers"] >= 1000
        assert account["verified"] is True or account["followers"] < 250_000
        assert isinstance(account["following"], int)


async def test_the_same_seed_gives_the_same_figures_and_another_seed_others(
    open_client: OpenClient,
) -> None:
    ids = ",".join(account["external_id"] for account in _seeded_accounts(3))
    params = {"account_ids": ids, "since": SINCE, "until": UNTIL, "limit": "1000"}
    first = await open_client(create_social_app(SimulatorConfig())).get(
        "/v2/metrics", params=params
    )
    again = await open_client(create_social_app(SimulatorConfig())).get(
        "/v2/metrics", params=params
    )
    assert first.json() == again.json()
    other = create_social_app(SimulatorConfig(seed=8))
    other_ids = ",".join(account["external_id"] for account in _seeded_accounts(3, seed=8))
    shifted = await open_client(other).get(
        "/v2/metrics", params={**params, "account_ids": other_ids}
    )
    assert len(shifted.json()["data"]) == len(first.json()["data"]) == 30
    figures = [point["impressions"] for point in first.json()["data"]]
    assert figures != [point["impressions"] for point in shifted.json()["data"]]


async def test_daily_metrics_are_plausible_for_every_account_and_day(
    open_client: OpenClient,
) -> None:
    client = open_client(create_social_app(SimulatorConfig()))
    ids = [account["external_id"] for account in _seeded_accounts(4)]
    body = {"account_ids": ids, "since": SINCE, "until": UNTIL}
    points = (await client.post("/v2/metrics:batchGet", json=body)).json()["data"]
    assert len(points) == 40
    for point in points:
        assert 0 < point["reach"] <= point["impressions"]
        assert point["likes"] <= point["reach"]
        assert point["comments"] <= point["likes"]
        assert point["conversions"] <= point["clicks"] <= point["reach"]
        assert point["spend_cents"] >= 0
    assert len({point["impressions"] for point in points}) > 30


async def test_paging_walks_every_account_day_once_and_matches_the_batch(
    open_client: OpenClient,
) -> None:
    app = create_social_app(SimulatorConfig())
    client = open_client(app)
    ids = [account["external_id"] for account in _seeded_accounts(3)]
    params = {"account_ids": ",".join(ids), "since": SINCE, "until": UNTIL, "limit": "7"}
    paged: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = await client.get(
            "/v2/metrics", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200
        paged.extend(response.json()["data"])
        cursor = response.json()["paging"]["next_cursor"]
        if cursor is None:
            break
    keys = [(point["account_id"], point["date"]) for point in paged]
    assert keys == [(i, f"2026-03-{day:02d}") for i in ids for day in range(1, 11)]
    batch = await client.post(
        "/v2/metrics:batchGet", json={"account_ids": ids, "since": SINCE, "until": UNTIL}
    )
    assert batch.json()["data"] == paged
    stats = (await client.get("/_control/stats")).json()
    assert stats["calls"] == {"/v2/metrics": 5, "/v2/metrics:batchGet": 1}


async def test_a_cursor_cannot_be_replayed_against_another_query(open_client: OpenClient) -> None:
    client = open_client(create_social_app(SimulatorConfig()))
    ids = [account["external_id"] for account in _seeded_accounts(2)]
    params = {"account_ids": ",".join(ids), "since": SINCE, "until": UNTIL, "limit": "3"}
    cursor = (await client.get("/v2/metrics", params=params)).json()["paging"]["next_cursor"]
    moved = {**params, "until": "2026-03-20", "cursor": cursor}
    response = await client.get("/v2/metrics", params=moved)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


async def test_bad_ranges_and_oversized_batches_are_refused(open_client: OpenClient) -> None:
    client = open_client(create_social_app(SimulatorConfig()))
    account = _seeded_accounts(1)[0]["external_id"]
    cases = [
        {"account_ids": account, "since": UNTIL, "until": SINCE},
        {"account_ids": account, "since": "2025-01-01", "until": "2026-01-02"},
        {"account_ids": account, "since": "March", "until": UNTIL},
        {"account_ids": account, "until": UNTIL},
        {"since": SINCE, "until": UNTIL},
    ]
    for params in cases:
        assert (await client.get("/v2/metrics", params=params)).status_code == 400, params
    many = [f"in{n:012d}" for n in range(101)]
    oversized = {"account_ids": many, "since": SINCE, "until": UNTIL}
    assert (await client.post("/v2/metrics:batchGet", json=oversized)).status_code == 400
    for content in (b"[1]", b"not json"):
        response = await client.post("/v2/metrics:batchGet", content=content)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("body must be")


async def test_configured_latency_delays_every_answer(open_client: OpenClient) -> None:
    client = open_client(create_social_app(SimulatorConfig(latency_ms=(20, 20))))
    account = _seeded_accounts(1)[0]["external_id"]
    started = time.perf_counter()
    response = await client.get("/v2/accounts", params={"ids": account})
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.02
