"""The audit trail: events buffered in memory and written in batches off the response path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from hub.store.tables import AuditEventRow, ErasureRow

if TYPE_CHECKING:
    from hub.auth import Principal

logger = logging.getLogger("hub.audit")


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
    """`record` never waits; a background task writes batches; `close` writes what is left."""

    def __init__(
        self, engine: AsyncEngine, *, flush_interval_s: float = 0.5, batch_size: int = 500
    ) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self._buffer: list[AuditEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, event: AuditEvent) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def flush(self) -> int:
        """Write every buffered event; on a store failure they stay buffered for the next try."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                async with self.engine.begin() as connection:
                    rows = await _without_erased_subjects(connection, batch)
                    await connection.execute(insert(AuditEventRow), rows)
            except Exception:
                logger.exception("audit batch of %d events not written; kept for retry", len(batch))
                self._buffer[:0] = batch
                return 0
            return len(batch)

    async def close(self) -> None:
        """Stop the writer and write what is still buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            await self.flush()


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
