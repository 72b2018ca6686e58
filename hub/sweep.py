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

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, tuple_
from sqlmodel import col

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


class StoreSweeper:
    def __init__(
        self,
        store: Store,
        *,
        idempotency_ttl_s: float,
        interval_s: float,
        leases: Leases | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.idempotency_ttl = timedelta(seconds=idempotency_ttl_s)
        self.interval_s = interval_s
        self.leases = leases
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> Swept:
        now = self.clock()
        return Swept(
            await self._idempotency_keys(now - self.idempotency_ttl),
            await self._webhook_events(now - WEBHOOK_EVENTS_KEPT),
        )

    async def run_leased(self) -> Swept | None:
        """A sweep if this replica holds (or takes) the lease; None if another does."""
        if self.leases is not None and not await self.leases.acquire(
            JOB, ttl_s=3 * self.interval_s
        ):
            return None
        return await self.run_once()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=JOB)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

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

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                swept = await self.run_leased()
            except Exception:
                logger.exception("store sweep failed; trying again later")
                continue
            if swept is not None and (swept.idempotency_keys or swept.webhook_events):
                logger.info(
                    "swept %d idempotency keys and %d webhook events",
                    swept.idempotency_keys,
                    swept.webhook_events,
                )
