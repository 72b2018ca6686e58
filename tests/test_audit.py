"""The audit trail: one bad event never blocks the others, an outage is bounded and retried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from hub.audit import AuditEvent, AuditLog
from hub.observability.metrics import Metrics
from hub.settings import Settings
from hub.store.engine import create_engine
from hub.store.migrate import upgrade
from hub.store.tables import AuditEventRow
from tests.helpers import refusing_audit_writes

DROPPED = "hub_audit_events_dropped_total"


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A migrated store of this test's own, on SQLite or PostgreSQL."""
    made = create_engine(settings)
    await upgrade(made)
    yield made
    await made.dispose()


def event(principal: str = "reader", *, subject: str = "con_0000000000000001") -> AuditEvent:
    return AuditEvent(
        at=datetime.now(UTC),
        coordinate="Contact.email",
        decision="allowed",
        tenant_id="acme",
        principal=principal,
        client_id="dash",
        purpose="campaign_management",
        subject=subject,
    )


def dropped(metrics: Metrics) -> float:
    return metrics.value(DROPPED)


async def principals(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(col(AuditEventRow.principal)).order_by(col(AuditEventRow.id))
        )
        return [principal or "" for (principal,) in rows]


async def test_an_event_the_store_refuses_is_dropped_counted_and_the_others_are_written(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.audit")
    metrics = Metrics()
    audit = AuditLog(engine, metrics=metrics, batch_size=8)
    names = [f"reader-{n}" for n in range(20)]
    for n, name in enumerate(names):
        assert audit.record(event(name))
        if n in (3, 11):
            assert audit.record(event("evil\ud800", subject="con_00000000000000e1"))
    assert await audit.flush() == 20
    assert await principals(engine) == names
    assert audit.buffered == 0
    assert dropped(metrics) == 2
    assert f"{DROPPED} 2.0\n" in metrics.render().decode()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "dropped" in logged
    assert "Contact.email allowed" in logged
    for personal in ("evil", "con_00000000000000e1", "reader", "acme", "campaign_management"):
        assert personal not in logged


async def test_a_store_outage_keeps_events_buffered_and_writes_them_when_it_is_back(
    engine: AsyncEngine,
) -> None:
    metrics = Metrics()
    audit = AuditLog(engine, metrics=metrics, batch_size=2)
    async with refusing_audit_writes(engine):
        for n in range(5):
            assert audit.record(event(f"reader-{n}"))
        assert await audit.flush() == 0
        assert await audit.flush() == 0
        assert audit.buffered == 5
    assert dropped(metrics) == 0
    assert await audit.flush() == 5
    assert await principals(engine) == [f"reader-{n}" for n in range(5)]
    assert audit.buffered == 0


async def test_the_buffer_is_bounded_and_keeps_all_of_a_records_events_or_none(
    engine: AsyncEngine,
) -> None:
    metrics = Metrics()
    audit = AuditLog(engine, metrics=metrics, max_events=3)
    async with refusing_audit_writes(engine):
        assert audit.record(event("a"), event("b"))
        assert not audit.record(event("c"), event("d"))
        assert audit.has_room(1) and not audit.has_room(2)
        assert audit.record(event("e"))
        assert not audit.record(event("f"))
        await audit.flush()
        assert audit.buffered == 3
    assert dropped(metrics) == 3
    assert await audit.flush() == 3
    assert await principals(engine) == ["a", "b", "e"]


async def test_events_the_store_cannot_take_at_shutdown_are_counted_as_dropped(
    engine: AsyncEngine,
) -> None:
    metrics = Metrics()
    audit = AuditLog(engine, metrics=metrics, flush_interval_s=0.01)
    await audit.start()
    async with refusing_audit_writes(engine):
        assert audit.record(event("a"), event("b"))
        await audit.close()
    assert audit.buffered == 0
    assert dropped(metrics) == 2
    assert await principals(engine) == []


async def test_a_batch_committed_while_the_hub_shuts_down_is_written_once(
    engine: AsyncEngine,
) -> None:
    committed = asyncio.Event()

    class SlowAfterCommit(AuditLog):
        async def _write(self, batch: list[AuditEvent]) -> None:
            await super()._write(batch)
            committed.set()
            await asyncio.sleep(0.2)  # e.g. the connection handed back slowly

    audit = SlowAfterCommit(engine, batch_size=3)
    await audit.start()
    audit.record(event("a"), event("b"), event("c"))
    await committed.wait()
    await audit.close()
    assert await principals(engine) == ["a", "b", "c"]
