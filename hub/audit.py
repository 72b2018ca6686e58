"""The audit trail: events buffered in memory and written in batches off the response path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from hub.observability.metrics import Metrics
from hub.store.tables import AuditEventRow, ErasureRow
from hub.store.tenancy import as_system

if TYPE_CHECKING:
    from hub.auth import Principal

logger = logging.getLogger("hub.audit")

DEFAULT_MAX_EVENTS = 100_000
"""Events kept in memory while the store takes no writes (`HUB_AUDIT_BUFFER_MAX_EVENTS`)."""
DROP_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decision about one schema coordinate (and, for personal data, one subject)."""

    at: datetime
    coordinate: str
    decision: str
    tenant_id: str | None = None
    principal: str | None = None
    client_id: str | None = None
    purpose: str | None = None
    subject: str | None = None
    reason: str | None = None

    @classmethod
    def by(
        cls,
        principal: Principal,
        *,
        at: datetime,
        coordinate: str,
        decision: str,
        subject: str | None = None,
        reason: str | None = None,
    ) -> AuditEvent:
        """An event of a decision about `principal`'s request (its tenant, subject, client and
        purpose)."""
        return cls(
            at=at,
            coordinate=coordinate,
            decision=decision,
            tenant_id=principal.tenant,
            principal=principal.subject,
            client_id=principal.client_id,
            purpose=principal.purpose,
            subject=subject,
            reason=reason,
        )


class AuditLog:
    """`record` never waits and says whether it kept the events; a background task writes
    batches; `close` writes what is left.

    One event the store refuses while it takes others (text it cannot hold) is set apart and
    dropped, so that it never holds back the rest. While the store takes nothing (an outage)
    events stay buffered for the next try, up to `max_events`; then `record` keeps no more,
    and its caller serves nothing those events would record. Every event not written is
    counted in `hub_audit_events_dropped_total` and logged without its values."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        metrics: Metrics | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
        flush_interval_s: float = 0.5,
        batch_size: int = 500,
    ) -> None:
        self.engine = engine
        self.max_events = max_events
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._buffer: list[AuditEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._metrics = metrics or Metrics()
        self._outage = False
        self._stop = asyncio.Event()
        self._drops_unlogged = 0
        self._drop_logged_at = -math.inf

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def has_room(self, count: int) -> bool:
        """Whether `record` would keep `count` more events now."""
        return len(self._buffer) + count <= self.max_events

    def record(self, *events: AuditEvent) -> bool:
        """Keep `events` for writing: all of them, or none when the buffer has no room for all.
        False: each is counted as dropped, and the caller must not serve a personal value that
        any of them records."""
        if not self.has_room(len(events)):
            self._drop(events, "the buffer is full")
            return False
        self._buffer.extend(events)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def flush(self) -> int:
        """Write the buffered events a batch at a time and return how many were written. An
        event the store refuses is dropped; while the store takes nothing, the rest stay.

        In system mode (`hub.store.tenancy`), whoever asks: the buffer holds every tenant's
        events, and every tenant's erasures are read to pseudonymise them."""
        with as_system():
            return await self._flush()

    async def _flush(self) -> int:
        async with self._lock:
            written = 0
            while self._buffer:
                batch = self._buffer[: self.batch_size]
                settled, count = await self._settle(batch)
                del self._buffer[:settled]
                written += count
                if settled < len(batch):
                    if not self._outage:
                        self._outage = True
                        logger.error(
                            "audit store takes no writes; %d events kept for retry (at most %d)",
                            len(self._buffer),
                            self.max_events,
                        )
                    return written
            if self._outage:
                self._outage = False
                logger.warning(
                    "audit store takes writes again; %d buffered events written", written
                )
            return written

    async def close(self) -> None:
        """Stop the writer and write what is still buffered; what cannot be is dropped.

        The writer is let finish the batch it is writing, not cancelled: a batch cancelled
        after its commit would stay buffered and be written twice."""
        if self._task is not None:
            self._stop.set()
            self._wake.set()
            await self._task
        await self.flush()
        if self._buffer:
            self._drop(self._buffer, "the store took no writes at shutdown")
            self._buffer.clear()

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            await self.flush()
            if self._outage:  # a full buffer keeps waking the writer: retry at the interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.flush_interval_s)

    async def _settle(self, batch: list[AuditEvent]) -> tuple[int, int]:
        """Write `batch`, or when it fails and the store takes writes, its halves in order
        down to the single events it refuses, which are dropped. Returns how many events of
        the batch's front are settled (written or dropped) and how many were written: fewer
        settled than given means the store takes nothing now."""
        try:
            await self._write(batch)
        except Exception as error:
            failure = type(error).__name__  # the message may hold the values: never logged
        else:
            return len(batch), len(batch)
        if not await self._takes_writes():
            return 0, 0
        if len(batch) == 1:
            self._drop(batch, f"the store refused it: {failure}")
            return 1, 0
        middle = len(batch) // 2
        settled, written = await self._settle(batch[:middle])
        if settled < middle:
            return settled, written
        settled_after, written_after = await self._settle(batch[middle:])
        return middle + settled_after, written + written_after

    async def _write(self, batch: list[AuditEvent]) -> None:
        async with self.engine.begin() as connection:
            rows = await _without_erased_subjects(connection, batch)
            await connection.execute(insert(AuditEventRow), rows)

    async def _takes_writes(self) -> bool:
        """Whether the store takes an audit row now: one written and rolled back."""
        probe = {"at": datetime.now(UTC), "coordinate": "audit.probe", "decision": "probe"}
        try:
            async with self.engine.connect() as connection:
                await connection.execute(insert(AuditEventRow), [probe])
                await connection.rollback()
        except Exception:
            return False
        return True

    def _drop(self, events: Sequence[AuditEvent], why: str) -> None:
        """Count dropped events; log them (coordinates and decisions only, never whose or by
        whom) at most once per `DROP_LOG_INTERVAL_S`."""
        self._metrics.record_audit_dropped(len(events))
        self._drops_unlogged += len(events)
        now = time.monotonic()
        if now - self._drop_logged_at < DROP_LOG_INTERVAL_S:
            return
        what = sorted({f"{event.coordinate} {event.decision}" for event in events})
        logger.error(
            "%d audit events dropped since the last report; now %d because %s: %s",
            self._drops_unlogged,
            len(events),
            why,
            ", ".join(what[:10]),
        )
        self._drops_unlogged = 0
        self._drop_logged_at = now


async def _without_erased_subjects(
    connection: AsyncConnection, batch: list[AuditEvent]
) -> list[dict[str, object]]:
    """The batch as rows, with the subject of anyone erased meanwhile pseudonymised: an
    event buffered before an erasure must not write the person's id back."""
    from hub.erasure import pseudonym

    subjects = {e.subject for e in batch if e.subject}
    erased: set[tuple[str, str]] = set()
    if subjects:
        result = await connection.execute(
            select(col(ErasureRow.contact_id), col(ErasureRow.tenant_id)).where(
                col(ErasureRow.contact_id).in_(subjects)
            )
        )
        erased = {(contact, tenant) for contact, tenant in result.all()}
    rows = []
    for event in batch:
        row = asdict(event)
        if event.subject and (event.subject, event.tenant_id) in erased:
            row["subject"] = pseudonym(event.tenant_id or "", event.subject)
        rows.append(row)
    return rows
