"""Consent changes: every grant and withdrawal is a new row; history is never overwritten."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hub.context import Context
from hub.errors import BadUserInput, NotFound
from hub.ids import new_id
from hub.policy.consent import ConsentEvent, consent_states
from hub.resolvers.campaigns import text
from hub.resolvers.contacts import check_contact_id, contact
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
    await context.store.insert(row)
    await context.forget_subject(found)
    return row


async def withdraw_consent(context: Context, contact_id: str, purpose: str) -> ConsentRow:
    """Withdraw the purpose's consent; takes effect for the very next request."""
    scope = context.require_scope()
    found = await _contact(context, contact_id)
    _check_purpose(context, purpose)
    history = await context.store.consents_by_contact(scope, [found])
    grants = [r for r in history.get(found, []) if r.purpose == purpose]
    if not grants:
        raise NotFound("This contact has no consent for that purpose.", argument="purpose")
    now = datetime.now(UTC)
    events = consent_events(grants)
    last = max(grants, key=lambda r: (r.recorded_at, r.id))
    if consent_states(events, now=now)[purpose] == "WITHDRAWN":
        return last
    row = last.withdrawal(at=now, source=last.source, evidence=last.evidence)
    await context.store.insert(row)
    await context.forget_subject(found)
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
