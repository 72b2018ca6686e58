"""Daily metrics of social accounts kept in the own store (`metric_days`).

Filled by the social API's webhooks (and by ingestion): a day's figures are replaced only
by a statement at least as recent as the one kept, so reordered or late deliveries never
roll a day back. Accounts belong to no tenant (influencers are shared); who may read an
account's figures is decided where they are read, as for the live API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from hub.policy.rows import RowScope
from hub.sources.social import MetricRecord
from hub.sources.store import Store
from hub.store.tables import CampaignMemberRow, CampaignRow, MetricDayRow, PlatformAccountRow

COUNTERS = MetricRecord._fields[2:]
"""The figures of a day, after (external_id, day): impressions … spend_minor."""
MAX_DAYS_PER_STATEMENT = 500
SETTLE = timedelta(seconds=10)
"""How long a kept day waits before incremental pulls (`updatedSince`) see it: longer than
a write takes to commit, and than the replicas' clocks differ."""


async def store_days(
    store: Store, records: Sequence[MetricRecord], *, observed_at: datetime, now: datetime
) -> list[MetricRecord]:
    """Keep each record's day, unless the store holds a more recent statement of it; the
    records kept (a late, older statement of a day is not)."""
    dialect = store.engine.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    kept: set[tuple[str, date]] = set()
    async with store.sessions.begin() as session:
        for start in range(0, len(records), MAX_DAYS_PER_STATEMENT):
            chunk = records[start : start + MAX_DAYS_PER_STATEMENT]
            rows: list[dict[str, Any]] = [
                {**record._asdict(), "observed_at": observed_at, "updated_at": now}
                for record in chunk
            ]
            statement = insert(MetricDayRow).values(rows)
            excluded = statement.excluded
            upsert = statement.on_conflict_do_update(
                index_elements=["external_id", "day"],
                set_={name: excluded[name] for name in (*COUNTERS, "observed_at", "updated_at")},
                where=col(MetricDayRow.observed_at) <= excluded.observed_at,
            ).returning(col(MetricDayRow.external_id), col(MetricDayRow.day))
            kept.update((external_id, day) for external_id, day in await session.execute(upsert))
    return [record for record in records if (record.external_id, record.day) in kept]


async def stored_days(
    store: Store, external_ids: Sequence[str], since: date, until: date
) -> dict[str, dict[date, MetricRecord]]:
    """The kept days `since..until` of each account, by day."""
    found: dict[str, dict[date, MetricRecord]] = {id_: {} for id_ in external_ids}
    if not external_ids:
        return found
    values = {"ids": list(dict.fromkeys(external_ids)), "since": since, "until": until}
    rows = await store.rows(_STORED_DAYS, values)
    for row in rows:
        record = MetricRecord(*row)
        found[record.external_id][record.day] = record
    return found


_STORED_DAYS = (
    select(*(col(getattr(MetricDayRow, name)) for name in MetricRecord._fields))
    .where(col(MetricDayRow.external_id).in_(bindparam("ids", expanding=True)))
    .where(col(MetricDayRow.day) >= bindparam("since"))
    .where(col(MetricDayRow.day) <= bindparam("until"))
)
"""The kept days of some accounts in a window; built once."""


@dataclass(frozen=True, slots=True)
class KeptRow:
    """A kept day of one account, with whose account it is and when it was kept."""

    record: MetricRecord
    influencer_id: str
    platform: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TenantRows:
    """What `Query.metrics` reads without a campaign or an influencer: the kept days of every
    account of the members of the scope's campaigns, in a stable order a cursor resumes."""

    scope: RowScope
    since: date | None = None
    until: date | None = None
    updated_since: datetime | None = None
    platform: str | None = None
    kept_before: datetime | None = None
    """With `updated_since`: only rows kept before this (now less `SETTLE`): a write still
    committing carries a time taken before its commit, and must not fall behind a pull's
    mark; it is read by the next pull instead."""

    def order(self) -> list[Any]:
        """By (day, account), or by (kept at, day, account) for incremental pulls."""
        keys = [col(MetricDayRow.day), col(MetricDayRow.external_id)]
        return [col(MetricDayRow.updated_at), *keys] if self.updated_since else keys

    def key(self, row: KeptRow) -> list[str]:
        keys = [row.record.day.isoformat(), row.record.external_id]
        return [row.updated_at.isoformat(), *keys] if self.updated_since else keys

    def _filtered(self, statement: Any) -> Any:
        scope = self.scope
        members = (
            select(col(CampaignMemberRow.influencer_id))
            .join(CampaignRow, col(CampaignRow.id) == col(CampaignMemberRow.campaign_id))
            .where(col(CampaignRow.tenant_id) == scope.tenant)
        )
        if scope.campaigns is not None:
            members = members.where(col(CampaignRow.id).in_(sorted(scope.campaigns)))
        statement = statement.join(
            PlatformAccountRow,
            col(PlatformAccountRow.external_id) == col(MetricDayRow.external_id),
        ).where(col(PlatformAccountRow.influencer_id).in_(members))
        if self.since is not None:
            statement = statement.where(col(MetricDayRow.day) >= self.since)
        if self.until is not None:
            statement = statement.where(col(MetricDayRow.day) <= self.until)
        if self.updated_since is not None:
            statement = statement.where(col(MetricDayRow.updated_at) > self.updated_since)
        if self.kept_before is not None:
            statement = statement.where(col(MetricDayRow.updated_at) <= self.kept_before)
        if self.platform is not None:
            statement = statement.where(col(PlatformAccountRow.platform) == self.platform)
        return statement

    async def page(self, store: Store, *, after: list[str] | None, first: int) -> list[KeptRow]:
        """Up to `first` rows after the row whose `key` is `after`."""
        columns = [col(getattr(MetricDayRow, name)) for name in MetricRecord._fields]
        statement = self._filtered(
            select(
                *columns,
                col(PlatformAccountRow.influencer_id),
                col(PlatformAccountRow.platform),
                col(MetricDayRow.updated_at),
            )
        )
        if after is not None:
            statement = statement.where(tuple_(*self.order()) > tuple_(*self.typed(after)))
        statement = statement.order_by(*self.order()).limit(first)
        async with store.sessions() as session:
            result = await session.execute(statement)
            return [
                KeptRow(MetricRecord(*row[:-3]), row[-3], row[-2], _utc(row[-1])) for row in result
            ]

    async def count(self, store: Store) -> int:
        statement = self._filtered(select(func.count()).select_from(MetricDayRow))
        async with store.sessions() as session:
            return int((await session.execute(statement)).scalar_one())

    def typed(self, key: list[str]) -> list[Any]:
        """The values of a row's `key` (ValueError when it is not one)."""
        *kept_at, day, account = key
        typed: list[Any] = [date.fromisoformat(day), account]
        return [datetime.fromisoformat(kept_at[0]), *typed] if kept_at else typed


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time the store keeps is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
