"""The data subject's rights: who read their data, a copy of it all, and erasure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import col

from hub.audit import AuditEvent
from hub.context import Context
from hub.erasure import delete_upstream, erase_in_store, pseudonym
from hub.errors import Forbidden, NotFound, SourceError, SourceUnavailable
from hub.policy.access import Coordinate
from hub.resolvers.contacts import check_contact_id, contact
from hub.sources.crm import CrmSource
from hub.sources.store import Page
from hub.store.tables import AuditEventRow, ErasureRow, ErasureTaskRow

PERSONAL = ("full_name", "email", "phone", "job_title")
# What the export holds, column by column, and the schema field whose access rule governs
# each column: the export gives nothing that the same caller could not read field by field.
# Columns with no field of their own (ids, times, the CRM link) go with the row's `id`; the
# access log holds what `AccessEvent` does.
CONTACT_COLUMNS: dict[str, Coordinate] = {
    "id": ("Contact", "id"),
    "influencer_id": ("Contact", "influencer"),
    "crm_id": ("Contact", "id"),
    "role": ("Contact", "role"),
    "company": ("Contact", "company"),
    "full_name": ("Contact", "fullName"),
    "email": ("Contact", "email"),
    "phone": ("Contact", "phone"),
    "job_title": ("Contact", "jobTitle"),
    "created_at": ("Contact", "id"),
    "updated_at": ("Contact", "id"),
    "erased_at": ("Contact", "id"),
}
CONSENT_COLUMNS: dict[str, Coordinate] = {
    "id": ("Consent", "id"),
    "contact_id": ("Consent", "id"),
    "purpose": ("Consent", "purpose"),
    "status": ("Consent", "status"),
    "lawful_basis": ("Consent", "lawfulBasis"),
    "granted_at": ("Consent", "grantedAt"),
    "withdrawn_at": ("Consent", "withdrawnAt"),
    "expires_at": ("Consent", "expiresAt"),
    "source": ("Consent", "source"),
    "evidence": ("Consent", "evidence"),
    "recorded_at": ("Consent", "recordedAt"),
}
EVENT_COLUMNS: dict[str, Coordinate] = {
    "at": ("AccessEvent", "at"),
    "principal": ("AccessEvent", "principal"),
    "client_id": ("AccessEvent", "clientId"),
    "purpose": ("AccessEvent", "purpose"),
    "coordinate": ("AccessEvent", "coordinate"),
    "decision": ("AccessEvent", "decision"),
    "reason": ("AccessEvent", "reason"),
}
EXPORTED: frozenset[Coordinate] = frozenset(
    {
        *CONTACT_COLUMNS.values(),
        ("Influencer", "id"),  # `influencer_id` reads as `Contact.influencer { id }`
        *CONSENT_COLUMNS.values(),
        *EVENT_COLUMNS.values(),
    }
)


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
    audited, one event per personal value it contains. Refused (FORBIDDEN) when the caller may
    not read every field it holds."""
    refused = sorted(EXPORTED & context.denied)
    if refused:
        context.denials.update(refused)
        names = [f"{type_name}.{field_name}" for type_name, field_name in refused]
        raise Forbidden(
            f"You may not read all of this export: {', '.join(f'`{name}`' for name in names)}.",
            coordinates=names,
        )
    await _subject(context, contact_id)
    scope = context.require_scope()
    row = await context.store.contacts_by_id(scope, [contact_id])
    found = row[contact_id]
    consents = (await context.store.consents_by_contact(scope, [contact_id])).get(contact_id, [])
    log = await access_log(context, contact_id, first=100_000, after=None)
    crm_copy = await _crm_copy(context, scope.tenant, found.crm_id)
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
    ] + [
        AuditEvent.by(
            context.principal,
            at=now,
            coordinate=f"Query.exportContactData.crm.{name}",
            decision="exported",
            subject=contact_id,
        )
        for name, value in (crm_copy or {}).get("record", {}).items()
        if name in CRM_PERSONAL and value is not None
    ]
    if context.audit is not None and not context.audit.record(*exported):
        raise SourceUnavailable(
            "audit", "The audit trail cannot record this export now; try again later."
        )
    return {
        "exportedAt": now.isoformat(),
        "contact": _json(found, CONTACT_COLUMNS),
        "consents": [_json(c, CONSENT_COLUMNS) for c in consents],
        "crm": crm_copy,
        "accessLog": [_json(e, EVENT_COLUMNS) for e in log.rows],
    }


CRM_PERSONAL = frozenset({"fullName", "email", "phone", "jobTitle"})


async def _crm_copy(context: Context, tenant: str, crm_id: str | None) -> dict[str, Any] | None:
    """The CRM's own copy of the person, read fresh and attributed to it; None when no CRM
    record is linked. A CRM that cannot answer is said so in the copy's place."""
    if crm_id is None:
        return None
    copy: dict[str, Any] = {"source": "crm", "crmId": crm_id}
    crm = context.sources.crm
    if not isinstance(crm, CrmSource):
        return {**copy, "unavailable": "The CRM source is not configured."}
    try:
        found = await crm.current(tenant, [crm_id])
    except SourceError as error:
        return {**copy, "unavailable": error.message}
    record = found.get(crm_id)
    if record is None:
        return {**copy, "record": None}
    return {**copy, "record": {**record.fields, "updatedAt": record.updated_at.isoformat()}}


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


def _json(row: Any, columns: dict[str, Coordinate]) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in columns}
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
