"""Daily metrics of social accounts kept in the own store (`metric_days`).

Filled by the social API's webhooks (and by ingestion): a day's figures are replaced only
by a statement at least as recent as the one kept, so reordered or late deliveries never
roll a day back. Accounts belong to no tenant (influencers are shared); who may read an
account's figures is decided where they are read, as for the live API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from hub.sources.social import MetricRecord
from hub.sources.store import Store
from hub.store.tables import MetricDayRow

COUNTERS = MetricRecord._fields[2:]
"""The figures of a day, after (external_id, day): impressions … spend_minor."""
MAX_DAYS_PER_STATEMENT = 500


async def store_days(
    store: Store, records: Sequence[MetricRecord], *, observed_at: datetime, now: datetime
) -> None:
    """Keep each record's day, unless the store holds a more recent statement of it."""
    dialect = store.engine.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    async with store.sessions.begin() as session:
        for start in range(0, len(records), MAX_DAYS_PER_STATEMENT):
            chunk = records[start : start + MAX_DAYS_PER_STATEMENT]
            rows: list[dict[str, Any]] = [
                {**record._asdict(), "observed_at": observed_at, "updated_at": now}
                for record in chunk
            ]
            statement = insert(MetricDayRow).values(rows)
            excluded = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=["external_id", "day"],
                set_={name: excluded[name] for name in (*COUNTERS, "observed_at", "updated_at")},
                where=col(MetricDayRow.observed_at) <= excluded.observed_at,
            )
            await session.execute(statement)


async def stored_days(
    store: Store, external_ids: Sequence[str], since: date, until: date
) -> dict[str, dict[date, MetricRecord]]:
    """The kept days `since..until` of each account, by day."""
    found: dict[str, dict[date, MetricRecord]] = {id_: {} for id_ in external_ids}
    if not external_ids:
        return found
    columns = [col(getattr(MetricDayRow, name)) for name in MetricRecord._fields]
    async with store.sessions() as session:
        result = await session.execute(
            select(*columns)
            .where(col(MetricDayRow.external_id).in_(list(dict.fromkeys(external_ids))))
            .where(col(MetricDayRow.day) >= since)
            .where(col(MetricDayRow.day) <= until)
        )
        for row in result:
            record = MetricRecord(*row)
            found[record.external_id][record.day] = record
    return found
