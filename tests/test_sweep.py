"""The store's housekeeping: idempotency keys past their TTL and old processed webhook
events go, in batches, on one replica at a time; everything younger stays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from hub import sweep
from hub.settings import Settings
from hub.sources.store import Store
from hub.store import migrate
from hub.store.engine import create_engine
from hub.store.leases import Leases
from hub.store.tables import IdempotencyRow, IdempotencySubjectRow, WebhookEventRow
from tests.conftest import running_app

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TTL_S = 3600.0


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    yield Store(engine)
    await engine.dispose()


async def _fill(store: Store) -> None:
    async with store.sessions.begin() as session:
        for n in range(5):
            for age, prefix in ((timedelta(hours=2), "old"), (timedelta(minutes=5), "young")):
                key = f"{prefix}-{n}"
                session.add(
                    IdempotencyRow(key=key, request_hash="h", response=None, created_at=NOW - age)
                )
                session.add(IdempotencySubjectRow(key=key, subject=f"con_{prefix}{n}"))
            for age, processed, prefix in (
                (timedelta(days=8), True, "done-long-ago"),
                (timedelta(days=1), True, "done-lately"),
                (timedelta(days=30), False, "never-done"),
            ):
                at = NOW - age
                session.add(
                    WebhookEventRow(
                        source="social",
                        event_id=f"{prefix}-{n}",
                        signature=f"{prefix}-{n}",
                        type="metrics.updated",
                        payload={},
                        sent_at=at,
                        received_at=at,
                        processed_at=at if processed else None,
                        next_attempt_at=at,
                    )
                )


async def _left(store: Store) -> tuple[list[str], int, list[str]]:
    async with store.sessions() as session:
        keys = sorted((await session.scalars(select(col(IdempotencyRow.key)))).all())
        subjects = (
            await session.execute(select(func.count()).select_from(IdempotencySubjectRow))
        ).scalar_one()
        events = sorted((await session.scalars(select(col(WebhookEventRow.event_id)))).all())
    return keys, int(subjects), events


async def test_what_has_served_its_time_goes_in_batches_and_the_rest_stays(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "BATCH", 2)  # several batches of each
    await _fill(store)
    sweeper = sweep.StoreSweeper(store, idempotency_ttl_s=TTL_S, interval_s=60, clock=lambda: NOW)
    swept = await sweeper.run_once()
    keys, subjects, events = await _left(store)
    assert (swept.idempotency_keys, swept.webhook_events) == (5, 5)
    assert keys == [f"young-{n}" for n in range(5)] and subjects == 5
    assert events == sorted(
        [f"done-lately-{n}" for n in range(5)] + [f"never-done-{n}" for n in range(5)]
    )
    assert await sweeper.run_once() == sweep.Swept(0, 0)


async def test_one_replica_at_a_time_sweeps(store: Store) -> None:
    await _fill(store)
    replicas = [
        sweep.StoreSweeper(
            store,
            idempotency_ttl_s=TTL_S,
            interval_s=60,
            leases=Leases(store.sessions, holder=name, clock=lambda: NOW),
            clock=lambda: NOW,
        )
        for name in ("a", "b")
    ]
    first = await replicas[0].run_leased()
    assert first is not None and first.idempotency_keys == 5
    assert await replicas[1].run_leased() is None


async def test_a_serving_hub_sweeps_on_its_own(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(
        update={"sweep_interval_s": 0.05, "idempotency_ttl_s": 60}
    )
    async with running_app(settings) as (app, _client):
        store = app.state.hub.store
        old = datetime.now(UTC) - timedelta(hours=1)
        async with store.sessions.begin() as session:
            session.add(IdempotencyRow(key="stale", request_hash="h", created_at=old))
        for _ in range(100):
            keys, _subjects, _events = await _left(store)
            if not keys:
                break
            await asyncio.sleep(0.05)
    assert keys == []
