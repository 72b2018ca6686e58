"""Erasure: anonymise a contact in the own store, delete its upstream copies, keep a tombstone,
and retry the upstream deletions that failed until they succeed."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlmodel import col

from hub.errors import SourceError
from hub.idempotency import forget_answers_naming
from hub.jobs import PeriodicJob
from hub.policy.rows import RowScope
from hub.sources.crm import CrmLookup
from hub.sources.store import ContactGone, DuplicateRow, Store
from hub.store.leases import Leases
from hub.store.tables import (
    AuditEventRow,
    ConsentRow,
    ContactRow,
    CrmOutboxRow,
    ErasureRow,
    ErasureTaskRow,
)

logger = logging.getLogger("hub.erasure")

RETRY_BACKOFF_S = (30, 120, 600, 3600)
NO_CONTACT_DATA = "holds no data about contacts"
NOT_OURS = "the CRM record belongs to another workspace; nothing was deleted there"


def fingerprint(tenant: str, value: str) -> str:
    """What a tombstone keeps of an identifier: enough to recognise it, nothing to read."""
    return hashlib.sha256(f"{tenant}:{value}".encode()).hexdigest()


def pseudonym(tenant: str, contact_id: str) -> str:
    """The subject of an erased contact's audit events: stable, not the id."""
    return "erased:" + fingerprint(tenant, contact_id)[:16]


async def erase_in_store(
    store: Store,
    scope: RowScope,
    contact_id: str,
    *,
    now: datetime,
    erased_by: str | None,
    crm_configured: bool,
) -> tuple[ErasureRow | None, str | None]:
    """Anonymise the contact, pseudonymise its audit trail and write the tombstone in one
    transaction. Returns the tombstone (None when the contact is not in scope) and the CRM id
    still to delete upstream. Erasing twice, even at the same time, returns the first
    tombstone."""
    try:
        return await _erase(store, scope, contact_id, now, erased_by, crm_configured)
    except (ContactGone, DuplicateRow):
        # Erased already (or by a concurrent erasure, which this one waited for).
        async with store.sessions() as session:
            existing = await session.get(ErasureRow, contact_id)
        return (existing if existing and existing.tenant_id == scope.tenant else None), None


async def _erase(
    store: Store,
    scope: RowScope,
    contact_id: str,
    now: datetime,
    erased_by: str | None,
    crm_configured: bool,
) -> tuple[ErasureRow | None, str | None]:
    async with store.writing_contact(scope, contact_id) as session:
        row = await session.get_one(ContactRow, contact_id)
        crm_id = row.crm_id
        tombstone = ErasureRow(
            contact_id=contact_id,
            tenant_id=scope.tenant,
            erased_at=now,
            erased_by=erased_by,
            email_hash=fingerprint(scope.tenant, row.email_normalized)
            if row.email_normalized
            else None,
            crm_hash=fingerprint(scope.tenant, crm_id) if crm_id else None,
            sources=[
                _entry("store", "ERASED", None, now),
                _entry("crm", "PENDING", None, now)
                if crm_id and crm_configured
                else _entry("crm", "NOT_SUPPORTED", _crm_reason(crm_id), now),
                _entry("social", "NOT_SUPPORTED", NO_CONTACT_DATA, now),
                _entry("discovery", "NOT_SUPPORTED", NO_CONTACT_DATA, now),
            ],
        )
        for name in (
            "full_name",
            "email",
            "email_normalized",
            "phone",
            "role",
            "company",
            "crm_id",
            "phone_e164",
            "job_title",
            "crm_base",
            "crm_synced_at",
            "field_changed_at",
        ):
            setattr(row, name, None)
        row.erased_at = now
        row.updated_at = now
        session.add(tombstone)
        await _withdraw_everything(session, contact_id, now)
        # Free text of the consent history (who gave it where, the evidence) may name the
        # person; the statuses and dates stay as the record of what was lawful when.
        await session.execute(
            update(ConsentRow)
            .where(col(ConsentRow.contact_id) == contact_id)
            .values(evidence=None, source="erased")
        )
        await session.execute(
            update(AuditEventRow)
            .where(col(AuditEventRow.subject) == contact_id)
            .values(subject=pseudonym(scope.tenant, contact_id))
        )
        await forget_answers_naming(session, contact_id)
        # Write-backs still queued hold the person's values, and would put them back.
        await session.execute(
            delete(CrmOutboxRow).where(col(CrmOutboxRow.contact_id) == contact_id)
        )
        if crm_id and crm_configured:
            session.add(
                ErasureTaskRow(
                    contact_id=contact_id,
                    tenant_id=scope.tenant,
                    source="crm",
                    upstream_id=crm_id,
                    next_attempt_at=now,
                )
            )
    return tombstone, crm_id if crm_configured else None


async def _withdraw_everything(session: Any, contact_id: str, now: datetime) -> None:
    """A WITHDRAWN event for every purpose whose newest event grants: nothing may be read
    again on a consent given before the erasure."""
    rows = (
        await session.scalars(select(ConsentRow).where(col(ConsentRow.contact_id) == contact_id))
    ).all()
    newest: dict[str, ConsentRow] = {}
    for row in rows:
        if row.purpose not in newest or row.recorded_at >= newest[row.purpose].recorded_at:
            newest[row.purpose] = row
    for row in newest.values():
        if row.status == "GRANTED":
            # The person's free text (evidence) goes with the erasure. Never before the grant
            # it ends: one that committed just before this erasure took the contact may carry
            # a later time than `now`, which was read before.
            at = max(now, row.recorded_at)
            session.add(row.withdrawal(at=at, source="erased", evidence=None))


async def delete_upstream(
    store: Store, crm: CrmLookup, task: ErasureTaskRow, *, now: datetime
) -> str:
    """One attempt at a task: on success the task goes and the report says ERASED; on failure
    the report says FAILED with the reason and the task waits for its next attempt."""
    try:
        ours = await crm.delete(task.upstream_id, tenant=task.tenant_id)
    except SourceError as exc:
        attempts = task.attempts + 1
        delay = RETRY_BACKOFF_S[min(attempts - 1, len(RETRY_BACKOFF_S) - 1)]
        async with store.sessions.begin() as session:
            await session.execute(
                update(ErasureTaskRow)
                .where(col(ErasureTaskRow.id) == task.id)
                .values(
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=exc.message[:500],
                )
            )
            await _report(session, task.contact_id, "crm", "FAILED", exc.message, now)
        return "FAILED"
    status, reason = ("ERASED", None) if ours else ("NOT_SUPPORTED", NOT_OURS)
    async with store.sessions.begin() as session:
        stale = await session.get(ErasureTaskRow, task.id)
        if stale is not None:
            await session.delete(stale)
        await _report(session, task.contact_id, "crm", status, reason, now)
    return status


async def sweep_audit(store: Store, *, since: datetime) -> int:
    """Pseudonymise audit events of people erased since `since` that were written with their
    id anyway (a batch in flight while the erasure committed)."""
    async with store.sessions.begin() as session:
        erased = (
            await session.execute(
                select(col(ErasureRow.contact_id), col(ErasureRow.tenant_id)).where(
                    col(ErasureRow.erased_at) >= since
                )
            )
        ).all()
        changed = 0
        for contact_id, tenant in erased:
            result = await session.execute(
                update(AuditEventRow)
                .where(col(AuditEventRow.subject) == contact_id)
                .values(subject=pseudonym(tenant, contact_id))
            )
            changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


async def due_tasks(store: Store, *, now: datetime, limit: int = 50) -> list[ErasureTaskRow]:
    async with store.sessions() as session:
        stmt = (
            select(ErasureTaskRow)
            .where(col(ErasureTaskRow.next_attempt_at) <= now)
            .order_by(col(ErasureTaskRow.next_attempt_at))
            .limit(limit)
        )
        return list((await session.scalars(stmt)).all())


class ErasureRetrier(PeriodicJob[int]):
    """Retries failed upstream deletions in the background until each succeeds; with
    `leases`, on one replica at a time (the one holding the job's lease)."""

    name = "erasure-retrier"

    def __init__(
        self,
        store: Store,
        crm: Callable[[], CrmLookup | None],
        *,
        interval_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        leases: Leases | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, leases=leases)
        self.store = store
        self.crm = crm
        self.clock = clock

    async def run_once(self) -> int:
        await sweep_audit(self.store, since=self.clock() - timedelta(days=1))
        crm = self.crm()
        if crm is None:
            return 0
        done = 0
        for task in await due_tasks(self.store, now=self.clock()):
            if not await self.still_held():
                break  # another replica took the job over: it goes on from here
            if await delete_upstream(self.store, crm, task, now=self.clock()) == "ERASED":
                done += 1
        return done


async def _report(
    session: Any, contact_id: str, source: str, status: str, reason: str | None, now: datetime
) -> None:
    tombstone = await session.get(ErasureRow, contact_id)
    if tombstone is None:
        return
    tombstone.sources = [
        _entry(source, status, reason, now) if entry["source"] == source else entry
        for entry in tombstone.sources
    ]


def _entry(source: str, status: str, reason: str | None, now: datetime) -> dict[str, Any]:
    return {"source": source, "status": status, "reason": reason, "updated_at": now.isoformat()}


def _crm_reason(crm_id: str | None) -> str:
    return "no CRM record is linked" if not crm_id else "the CRM source is not configured"


async def is_tombstoned(
    store: Store, tenant: str, *, email: str | None, crm_id: str | None
) -> bool:
    """Whether an email or CRM id belongs to a person this tenant erased."""
    return bool(await tombstoned(store, tenant, [value for value in (email, crm_id) if value]))


async def tombstoned(store: Store, tenant: str, values: list[str]) -> set[str]:
    """Those of `values` (emails, CRM ids) that belong to people this tenant erased."""
    async with store.sessions() as session:
        return await tombstoned_in(session, tenant, values)


async def tombstoned_in(session: Any, tenant: str, values: list[str]) -> set[str]:
    """`tombstoned`, read in the caller's transaction."""
    by_hash = {fingerprint(tenant, value): value for value in values}
    found: set[str] = set()
    every = list(by_hash)
    for start in range(0, len(every), 500):
        hashes = every[start : start + 500]
        stmt = select(col(ErasureRow.email_hash), col(ErasureRow.crm_hash)).where(
            col(ErasureRow.tenant_id) == tenant,
            or_(col(ErasureRow.email_hash).in_(hashes), col(ErasureRow.crm_hash).in_(hashes)),
        )
        for email_hash, crm_hash in (await session.execute(stmt)).all():
            found.update(by_hash[h] for h in (email_hash, crm_hash) if h in by_hash)
    return found
