"""Leases on background jobs: one holder at a time, taken over once expired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import create_engine
from hub.store.leases import Leases


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


async def test_one_holder_at_a_time_until_its_lease_expires(engine: AsyncEngine) -> None:
    clock = Clock()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    a = Leases(sessions, holder="a", clock=clock)
    b = Leases(sessions, holder="b", clock=clock)
    assert await a.acquire("erasure", ttl_s=60)
    assert not await b.acquire("erasure", ttl_s=60)
    assert await b.acquire("ingest", ttl_s=60)  # another job is another lease
    clock.now += timedelta(seconds=50)
    assert await a.acquire("erasure", ttl_s=60)  # renewed by its holder
    clock.now += timedelta(seconds=50)
    assert not await b.acquire("erasure", ttl_s=60)  # the renewal holds
    clock.now += timedelta(seconds=11)
    assert await b.acquire("erasure", ttl_s=60)  # expired: taken over
    assert not await a.acquire("erasure", ttl_s=60)
    await b.release("erasure")
    assert await a.acquire("erasure", ttl_s=60)


async def test_processes_racing_for_a_new_lease_give_it_to_exactly_one(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    contenders = [
        Leases(async_sessionmaker(engine, expire_on_commit=False), holder=f"h{n}", clock=clock)
        for n in range(6)
    ]
    won = await asyncio.gather(*(leases.acquire("sync", ttl_s=30) for leases in contenders))
    assert sum(won) == 1
