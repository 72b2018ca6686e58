"""Metric history filled from the social API: `hub ingest metrics` and its scheduled job.

    accounts (every one, or a tenant's campaign members'), by external id
      -> in batches of 100: GET /v2/metrics page by page (the API's cursor), each page's
         days kept in `metric_days` (a later statement of a day is never replaced)
      -> after each batch, the checkpoint (`job_checkpoints`): a run stopped midway and
         started again with the same parameters goes on after the last batch it finished
      -> the accounts' cached windows dropped and their subscribers told of the days kept
         (`on_days`), where the caller can reach them

One process at a time ingests (the `ingest-metrics` lease, renewed each batch), whether the
command line or a replica's schedule runs it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from hub.jobs import PeriodicJob
from hub.metric_history import store_days
from hub.sources.social import MAX_IDS, MetricRecord, SocialSource
from hub.sources.store import Store
from hub.store import checkpoints
from hub.store.leases import Leases
from hub.store.tables import (
    CampaignMemberRow,
    CampaignRow,
    PlatformAccountRow,
)

logger = logging.getLogger("hub.ingest")

JOB = "ingest-metrics"
LEASE_S = 300.0
Progress = Callable[[str, int, int], None]
OnDays = Callable[[str, list[MetricRecord]], Awaitable[None]]


class IngestBusy(Exception):
    """Another process holds the ingestion lease."""


@dataclass(frozen=True, slots=True)
class IngestReport:
    accounts: int
    days: int
    resumed_after: str | None
    """The last account of the run this one went on from, if it resumed one."""


async def accounts_to_ingest(store: Store, tenant: str | None) -> list[str]:
    """External ids of every platform account, or of the accounts of `tenant`'s campaign
    members, in order."""
    statement = select(col(PlatformAccountRow.external_id)).distinct()
    if tenant is not None:
        statement = (
            statement.join(
                CampaignMemberRow,
                col(CampaignMemberRow.influencer_id) == col(PlatformAccountRow.influencer_id),
            )
            .join(CampaignRow, col(CampaignRow.id) == col(CampaignMemberRow.campaign_id))
            .where(col(CampaignRow.tenant_id) == tenant)
        )
    async with store.sessions() as session:
        found = (await session.execute(statement)).scalars().all()
    return sorted(found)


async def ingest_metrics(
    store: Store,
    social: SocialSource,
    leases: Leases,
    *,
    since: date,
    until: date,
    tenant: str | None = None,
    progress: Progress | None = None,
    on_days: OnDays | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestReport:
    """Keep every day `since..until` of the accounts; `IngestBusy` if another ingests."""
    if until < since:
        raise ValueError("until is before since")
    if not await leases.acquire(JOB, ttl_s=LEASE_S):
        raise IngestBusy("another process is ingesting metrics")
    try:
        parameters = f"{since.isoformat()}..{until.isoformat()} tenant={tenant or '*'}"
        accounts = await accounts_to_ingest(store, tenant)
        after = await checkpoints.position(store, JOB, parameters)
        todo = [account for account in accounts if after is None or account > after]
        done_before = len(accounts) - len(todo)
        days = 0
        if progress is not None:
            progress("metrics", done_before, len(accounts))
        for start in range(0, len(todo), MAX_IDS):
            batch = todo[start : start + MAX_IDS]
            kept: dict[str, list[MetricRecord]] = {}
            async for page in social.metric_pages(batch, since, until):
                kept_days = await store_days(store, page, observed_at=clock(), now=clock())
                days += len(page)
                for record in kept_days:
                    kept.setdefault(record.external_id, []).append(record)
            await checkpoints.save(store, JOB, parameters, batch[-1], clock())
            if not await leases.acquire(JOB, ttl_s=LEASE_S):
                raise IngestBusy("the ingestion lease was lost; another process goes on")
            if on_days is not None:
                for account, records in kept.items():
                    await on_days(account, records)
            if progress is not None:
                progress("metrics", done_before + start + len(batch), len(accounts))
        await checkpoints.clear(store, JOB, parameters)
        return IngestReport(len(accounts), days, after)
    finally:
        with contextlib.suppress(Exception):
            await leases.release(JOB)


class IngestSchedule(PeriodicJob["IngestReport | None"]):
    """`ingest_metrics` of the last `days` days every `interval_s`, on whichever replica
    holds the ingestion lease when it is due (`ingest_metrics` takes it, as the command line
    does)."""

    name = "ingest-metrics-schedule"

    def __init__(
        self,
        store: Store,
        social: Callable[[], SocialSource | None],
        *,
        interval_s: float,
        days: int = 3,
        on_days: OnDays | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.store = store
        self.social = social
        self.days = days
        self.on_days = on_days
        self.ingest_leases = Leases(store.sessions)

    async def run_once(self) -> IngestReport | None:
        social = self.social()
        if social is None:
            return None
        until = datetime.now(UTC).date()
        try:
            return await ingest_metrics(
                self.store,
                social,
                self.ingest_leases,
                since=until - timedelta(days=self.days - 1),
                until=until,
                on_days=self.on_days,
            )
        except IngestBusy:
            return None

    def report(self, outcome: IngestReport | None) -> None:
        if outcome is not None:
            logger.info("ingested %d days of %d accounts", outcome.days, outcome.accounts)
