"""Metric history: which statements of a day the store keeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hub.metric_history import store_days
from hub.settings import Settings
from hub.sources.social import MetricRecord
from hub.sources.store import Store
from hub.store.engine import create_engine
from hub.store.migrate import upgrade


def record(external_id: str, day: int, impressions: int) -> MetricRecord:
    return MetricRecord(external_id, date(2026, 11, day), impressions, 8, 3, 2, 1, 0, 5, 1, 0, 99)


async def test_a_late_older_statement_of_a_day_is_not_reported_as_kept(
    sqlite_settings: Settings,
) -> None:
    engine = create_engine(sqlite_settings)
    try:
        await upgrade(engine)
        store = Store(engine)
        now = datetime.now(UTC)
        first = await store_days(store, [record("a", 1, 100)], observed_at=now, now=now)
        older = now - timedelta(minutes=5)
        late = await store_days(
            store, [record("a", 1, 50), record("a", 2, 60)], observed_at=older, now=now
        )
        assert first == [record("a", 1, 100)]
        assert late == [record("a", 2, 60)]  # day 1 holds a more recent statement
    finally:
        await engine.dispose()
