"""The data subject's rights: who read their data, a copy of it all, and erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import col

from hub.audit import AuditEvent
from hub.context import Context
from hub.erasure import delete_upstream, erase_in_store, pseudonym
from hub.errors import NotFound, SourceUnavailable
from hub.resolvers.contacts import check_contact_id, contact
from hub.sources.store import Page
from hub.store.tables import AuditEventRow, ErasureRow, ErasureTaskRow

PERSONAL = ("full_name", "email", "phone")


async def _subject(context: Context, contact_id: str) -> str:
    check_contact_id(contact_id, argument="contactId")
    if await contact(context, contact_id) is None:
        raise NotFound("No contact with this id.", argument="contactId")
    return contact_id


def _events_of(context: Context, contact_id: str) -> Any:
    scope = context.require_scope()
    return (
        col(AuditEventRow.tenant_id) == scope.tenant,
        or_(
            col(AuditEventRow.subject) == contact_id,
            col(AuditEventRow.subject) == pseudonym(scope.tenant, contact_id),
        ),
    )


async def access_log(
    context: Context, contact_id: str, *, first: int, after: int | None
) -> Page[AuditEventRow]:
    """Every decision about the person's data, oldest first (including what is still buffered)."""
    await _subject(context, contact_id)
    if context.audit is not None:
        await context.audit.flush()
    stmt = select(AuditEventRow).where(*_events_of(context, contact_id))
    if after is not None:
        stmt = stmt.where(col(AuditEventRow.id) > after)
    async with context.store.sessions() as session:
        rows = list(
            (await session.scalars(stmt.order_by(col(AuditEventRow.id)).limit(first + 1))).all()
        )
    return Page(rows[:first], len(rows) > first)


async def access_log_count(context: Context, contact_id: str) -> int:
    stmt = select(func.count()).select_from(AuditEventRow).where(*_events_of(context, contact_id))
    async with context.store.sessions() as session:
        return int(await session.scalar(stmt) or 0)


async def export_contact(context: Context, contact_id: str) -> dict[str, Any]:
    """The person's data, consents and access log as one JSON document; the export itself is
    audited, one event per personal value it contains."""
    await _subject(context, contact_id)
    scope = context.require_scope()
    row = await context.store.contacts_by_id(scope, [contact_id])
    found = row[contact_id]
    consents = (await context.store.consents_by_contact(scope, [contact_id])).get(contact_id, [])
    log = await access_log(context, contact_id, first=100_000, after=None)
    now = datetime.now(UTC)
    exported = [
        AuditEvent.by(
            context.principal,
            at=now,
            coordinate=f"Query.exportContactData.{name}",
            decision="exported",
            subject=contact_id,
        )
        for name in PERSONAL
        if getattr(found, name) is not None
    ]
    if context.audit is not None and not context.audit.record(*exported):
        raise SourceUnavailable(
            "audit", "The audit trail cannot record this export now; try again later."
        )
    return {
        "exportedAt": now.isoformat(),
        "contact": _json(found.model_dump(exclude={"email_normalized", "tenant_id"})),
        "consents": [_json(c.model_dump(exclude={"tenant_id"})) for c in consents],
        "accessLog": [_json(e.model_dump(exclude={"tenant_id"})) for e in log.rows],
    }


async def erase_contact(context: Context, contact_id: str) -> ErasureRow:
    """Anonymise, purge every cache of the subject, delete upstream (retried until done)."""
    scope = context.require_scope()
    await _subject(context, contact_id)
    crm = context.sources.crm
    now = datetime.now(UTC)
    tombstone, crm_id = await erase_in_store(
        context.store,
        scope,
        contact_id,
        now=now,
        erased_by=context.principal.subject,
        crm_configured=crm is not None,
    )
    if tombstone is None:
        raise NotFound("No contact with this id.", argument="id")
    await context.forget_subject(contact_id)
    if crm_id is not None and crm is not None:
        await context.forget_subject(crm_id)
        async with context.store.sessions() as session:
            tasks = (
                await session.scalars(
                    select(ErasureTaskRow).where(col(ErasureTaskRow.contact_id) == contact_id)
                )
            ).all()
        for task in tasks:
            await delete_upstream(context.store, crm, task, now=datetime.now(UTC))
    return await erasure_report(context, contact_id) or tombstone


async def erasure_report(context: Context, contact_id: str) -> ErasureRow | None:
    scope = context.require_scope()
    check_contact_id(contact_id, argument="contactId")
    async with context.store.sessions() as session:
        row = await session.get(ErasureRow, contact_id)
    return row if row is not None and row.tenant_id == scope.tenant else None


def _json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
