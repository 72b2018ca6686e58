"""Leases on background jobs, kept in the store: one replica runs each job at a time.

A lease is a row (job, holder, expiry). A process takes it when it is free or expired, and
renews it each round while it holds it; a replica that dies gives it up by letting it
expire. Works the same on SQLite and PostgreSQL: taking an expired lease is one
conditional UPDATE, taking a new one an INSERT that only one process can win.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from hub.store.tables import JobLeaseRow


class Leases:
    """The leases one process holds; `holder` names it (a new one per process)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        holder: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.holder = holder or uuid.uuid4().hex
        self.clock = clock

    async def acquire(self, job: str, *, ttl_s: float) -> bool:
        """Take or renew the lease on `job` for `ttl_s`; False when another holds it."""
        now = self.clock()
        until = now + timedelta(seconds=ttl_s)
        async with self.sessions.begin() as session:
            taken = await session.execute(
                update(JobLeaseRow)
                .where(col(JobLeaseRow.name) == job)
                .where(
                    or_(col(JobLeaseRow.holder) == self.holder, col(JobLeaseRow.expires_at) <= now)
                )
                .values(holder=self.holder, expires_at=until)
            )
            if getattr(taken, "rowcount", 0):
                return True
        try:
            async with self.sessions.begin() as session:
                session.add(JobLeaseRow(name=job, holder=self.holder, expires_at=until))
        except IntegrityError:
            return False  # another process holds it (or took it just now)
        return True

    async def release(self, job: str) -> None:
        """Give up `job` now, if held, so another replica need not wait for the expiry."""
        async with self.sessions.begin() as session:
            await session.execute(
                delete(JobLeaseRow)
                .where(col(JobLeaseRow.name) == job)
                .where(col(JobLeaseRow.holder) == self.holder)
            )
