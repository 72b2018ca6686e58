"""Consent changes: every grant and withdrawal is a new row; history is never overwritten."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from hub.context import Context
from hub.errors import BadUserInput, NotFound
from hub.ids import new_id
from hub.policy.consent import ConsentEvent, consent_states
from hub.resolvers.campaigns import text
from hub.resolvers.contacts import check_contact_id, contact
from hub.sources.store import ContactGone
from hub.store.tables import ConsentRow


def consent_events(rows: Iterable[ConsentRow]) -> list[ConsentEvent]:
    """Consent rows as the policy reads them."""
    return [ConsentEvent(r.purpose, r.status, r.recorded_at, r.expires_at) for r in rows]


async def grant_consent(
    context: Context, contact_id: str, purpose: str, source: str, evidence: str | None
) -> ConsentRow:
    scope = context.require_scope()
    found = await _contact(context, contact_id)
    _check_purpose(context, purpose)
    now = datetime.now(UTC)
    assert context.consent is not None
    row = ConsentRow(
        id=new_id("consent"),
        tenant_id=scope.tenant,
        contact_id=found,
        purpose=purpose,
        status="GRANTED",
        lawful_basis="consent",
        granted_at=now,
        withdrawn_at=None,
        expires_at=now + timedelta(days=context.consent.validity_days),
        source=text(source, argument="source", max_length=200, required=True) or "",
        evidence=text(evidence, argument="evidence", max_length=2000, required=False),
        recorded_at=now,
    )
    await _add(context, found, purpose, lambda _history: row)
    return row


async def withdraw_consent(context: Context, contact_id: str, purpose: str) -> ConsentRow:
    """Withdraw the purpose's consent; takes effect for the very next request."""
    found = await _contact(context, contact_id)
    _check_purpose(context, purpose)
    now = datetime.now(UTC)

    def withdrawal(grants: list[ConsentRow]) -> ConsentRow:
        if not grants:
            raise NotFound("This contact has no consent for that purpose.", argument="purpose")
        last = max(grants, key=lambda r: (r.recorded_at, r.id))
        if consent_states(consent_events(grants), now=now)[purpose] == "WITHDRAWN":
            return last
        return last.withdrawal(at=now, source=last.source, evidence=last.evidence)

    return await _add(context, found, purpose, withdrawal)


async def _add(
    context: Context,
    contact_id: str,
    purpose: str,
    event: Callable[[list[ConsentRow]], ConsentRow],
) -> ConsentRow:
    """Store the event, unless the contact was erased (then NOT_FOUND, nothing stored)."""
    try:
        row = await context.store.add_consent_event(
            context.require_scope(), contact_id, purpose, event
        )
    except ContactGone:
        raise NotFound("No contact with this id.", argument="contactId") from None
    await context.forget_subject(contact_id)
    return row


async def _contact(context: Context, contact_id: str) -> str:
    check_contact_id(contact_id, argument="contactId")
    if await contact(context, contact_id) is None:
        raise NotFound("No contact with this id.", argument="contactId")
    return contact_id


def _check_purpose(context: Context, purpose: str) -> None:
    assert context.consent is not None
    if purpose not in context.consent.purposes:
        raise BadUserInput(
            f"`purpose` must be one of {', '.join(sorted(context.consent.purposes))}.",
            argument="purpose",
        )
