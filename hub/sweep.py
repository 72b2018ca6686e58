"""The store's housekeeping: what has served its time goes, so that tables do not grow forever.

    every `interval_s`, on the replica holding the `store-sweep` lease:
      idempotency keys older than HUB_IDEMPOTENCY_TTL_S, and the people they name
      webhook events processed (or abandoned) longer than `WEBHOOK_EVENTS_KEPT` ago
    in batches of `BATCH` rows, each its own short transaction

A key past its TTL is not replayed anyway (the request runs again as a new one); a
processed event is only kept to refuse a late redelivery of the same id, which senders stop
after days.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, tuple_
from sqlmodel import col

from hub.jobs import PeriodicJob
from hub.sources.store import Store
from hub.store.leases import Leases
from hub.store.tables import IdempotencyRow, IdempotencySubjectRow, WebhookEventRow

logger = logging.getLogger("hub.sweep")

JOB = "store-sweep"
BATCH = 1000
WEBHOOK_EVENTS_KEPT = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Swept:
    idempotency_keys: int
    webhook_events: int


class StoreSweeper(PeriodicJob[Swept]):
    name = JOB

    def __init__(
        self,
        store: Store,
        *,
        idempotency_ttl_s: float,
        interval_s: float,
        leases: Leases | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(interval_s=interval_s, leases=leases)
        self.store = store
        self.idempotency_ttl = timedelta(seconds=idempotency_ttl_s)
        self.clock = clock

    async def run_once(self) -> Swept:
        now = self.clock()
        return Swept(
            await self._idempotency_keys(now - self.idempotency_ttl),
            await self._webhook_events(now - WEBHOOK_EVENTS_KEPT),
        )

    async def _idempotency_keys(self, before: datetime) -> int:
        removed = 0
        while True:
            async with self.store.sessions.begin() as session:
                keys = list(
                    (
                        await session.scalars(
                            select(col(IdempotencyRow.key))
                            .where(col(IdempotencyRow.created_at) < before)
                            .limit(BATCH)
                        )
                    ).all()
                )
                if not keys:
                    return removed
                await session.execute(
                    delete(IdempotencySubjectRow).where(col(IdempotencySubjectRow.key).in_(keys))
                )
                await session.execute(
                    delete(IdempotencyRow)
                    .where(col(IdempotencyRow.key).in_(keys))
                    .where(col(IdempotencyRow.created_at) < before)
                )
            removed += len(keys)

    async def _webhook_events(self, before: datetime) -> int:
        removed = 0
        while True:
            async with self.store.sessions.begin() as session:
                found = (
                    await session.execute(
                        select(col(WebhookEventRow.source), col(WebhookEventRow.event_id))
                        .where(
                            or_(
                                col(WebhookEventRow.processed_at) < before,
                                col(WebhookEventRow.abandoned_at) < before,
                            )
                        )
                        .limit(BATCH)
                    )
                ).all()
                if not found:
                    return removed
                await session.execute(
                    delete(WebhookEventRow).where(
                        tuple_(col(WebhookEventRow.source), col(WebhookEventRow.event_id)).in_(
                            [tuple(row) for row in found]
                        )
                    )
                )
            removed += len(found)

    def report(self, outcome: Swept) -> None:
        if outcome.idempotency_keys or outcome.webhook_events:
            logger.info(
                "swept %d idempotency keys and %d webhook events",
                outcome.idempotency_keys,
                outcome.webhook_events,
            )
