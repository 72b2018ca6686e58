"""The social simulator's webhooks reach a hub over HTTP, faults and all, and the hub keeps
each day as last stated."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select

from hub.app import create_app
from hub.settings import DEV_WEBHOOK_SECRET, Settings
from hub.store.tables import MetricDayRow, WebhookEventRow
from tests.helpers import served

DAY = "2026-11-30"


async def _until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_deliveries_with_duplicates_reordering_and_lateness_leave_the_last_statement(
    sqlite_settings: Settings,
) -> None:
    app = create_app(sqlite_settings)
    async with served(app) as url:
        hub = app.state.hub
        social = hub.upstreams.simulators.urls["social"]
        plan = {
            "url": f"{url}/webhooks/social",
            "secret": DEV_WEBHOOK_SECRET,
            "interval_s": 0.02,
            "statements": 3,
            "day": DAY,
            "events": 30,
            "duplicate_rate": 0.3,
            "reorder_rate": 0.3,
            "late_s": 0.1,
        }
        async with httpx.AsyncClient(base_url=social) as simulator:
            started = await simulator.post("/_control/webhooks", json=plan)
            assert started.status_code == 200, started.text

            async def sent() -> bool:
                return bool((await simulator.get("/_control/webhooks")).json()["done"])

            await _until(sent)
            counts = (await simulator.get("/_control/webhooks")).json()

            async def processed() -> bool:
                async with hub.store.sessions() as session:
                    events = (await session.execute(select(WebhookEventRow))).scalars().all()
                return len(events) == 30 and all(e.processed_at for e in events)

            await _until(processed)
            async with hub.store.sessions() as session:
                rows = (await session.execute(select(MetricDayRow))).scalars().all()
            kept = {row.external_id: row for row in rows if row.day.isoformat() == DAY}
            full = await simulator.post(
                "/v2/metrics:batchGet",
                json={"account_ids": sorted(kept), "since": DAY, "until": DAY},
                headers={"Authorization": "Bearer sim-dev-key"},
            )
    assert counts["events"] == 30 and counts["duplicates"] > 0 and counts["reordered"] > 0
    assert counts["answers"] == {"202": 30, "200": counts["duplicates"]}
    assert len(kept) == 10  # three statements of each of ten accounts
    for point in full.json()["data"]:
        row = kept[point["account_id"]]
        assert (row.impressions, row.likes, row.spend_minor) == (
            point["impressions"],
            point["likes"],
            point["spend_cents"],
        )


async def test_a_plan_the_simulator_cannot_follow_is_400(sqlite_settings: Settings) -> None:
    from hub.simulators import SimulatorConfig, start_simulators

    running = await start_simulators({"social": SimulatorConfig()})
    try:
        async with httpx.AsyncClient(base_url=running.urls["social"]) as simulator:
            for plan in (
                {"url": "ftp://x", "secret": "s"},
                {"url": "http://x", "secret": "s", "duplicate_rate": 2},
                {"url": "http://x", "secret": "s", "colour": "blue"},
                {"url": "http://x", "secret": "s", "day": "yesterday"},
            ):
                answer = await simulator.post("/_control/webhooks", json=plan)
                assert answer.status_code == 400, plan
            assert (await simulator.get("/_control/webhooks")).json()["running"] is False
    finally:
        await running.stop()
