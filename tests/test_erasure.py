"""An erased contact stays erased: no write about it is stored again, however it is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlmodel import col, select

from hub.settings import Settings
from hub.store.tables import ConsentRow, ContactRow, ErasureRow
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql
from tests.schema.test_privacy import ERASE, _a_contact_with_consent

GRANT = """mutation ($id: ID!, $p: String!) { grantConsent(contactId: $id, purpose: $p,
  source: "call with Ola Nowak", evidence: "ola.nowak@example.com") { id status source } }"""
WITHDRAW = """mutation ($id: ID!, $p: String!) {
  withdrawConsent(contactId: $id, purpose: $p) { id status } }"""
UPSERT = """mutation ($input: ContactInput!) { upsertContact(input: $input) { id role } }"""
READ = """query ($id: ID!) { contact(id: $id) { id fullName email role company
  consents { purpose status source evidence } } }"""


async def _erased(client: httpx.AsyncClient, make_token: MakeToken) -> tuple[str, str]:
    """A consented contact, erased; its id and the email it had."""
    contact_id = await _a_contact_with_consent(client, make_token)
    _, before = await gql(client, READ, token=make_token(), variables={"id": contact_id})
    _, erased = await gql(
        client, ERASE, token=make_token(roles=["dpo"]), variables={"id": contact_id}
    )
    assert codes(erased) == [], erased
    email: str = before["data"]["contact"]["email"]
    return contact_id, email


async def test_writes_about_an_erased_contact_are_not_found_and_store_nothing(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id, email = await _erased(client, make_token)
    manager = make_token()
    _, before = await gql(client, READ, token=manager, variables={"id": contact_id})
    writes: list[tuple[str, dict[str, Any]]] = [
        (GRANT, {"id": contact_id, "p": "analytics"}),
        (GRANT, {"id": contact_id, "p": "campaign_management"}),
        # Already withdrawn by the erasure: nothing to write, and still not found.
        (WITHDRAW, {"id": contact_id, "p": "campaign_management"}),
        (UPSERT, {"input": {"id": contact_id, "role": "Agent", "fullName": "Ola Nowak"}}),
        (UPSERT, {"input": {"id": contact_id, "email": email, "company": "Back Again"}}),
        (UPSERT, {"input": {"id": contact_id, "crmId": "crm-acme-00999"}}),
    ]
    for query, variables in writes:
        _, payload = await gql(client, query, token=manager, variables=variables)
        assert codes(payload) == ["NOT_FOUND"], (variables, payload)
        assert payload["data"] is None
    _, after = await gql(client, READ, token=manager, variables={"id": contact_id})
    assert after["data"] == before["data"]
    contact = after["data"]["contact"]
    assert (contact["fullName"], contact["email"], contact["role"]) == (None, None, None)
    assert "Ola" not in str(after) and "Back Again" not in str(after)
    assert {c["status"] for c in contact["consents"]} <= {"WITHDRAWN", "EXPIRED", "GRANTED"}
    newest = {c["purpose"]: c["status"] for c in contact["consents"]}
    assert "GRANTED" not in newest.values()


async def test_a_grant_racing_an_erasure_is_stored_before_it_or_not_at_all(
    settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(settings) as (app, client):
        contact_id = await _a_contact_with_consent(client, make_token)
        manager, dpo = make_token(), make_token(roles=["dpo"])
        grants = [
            gql(client, GRANT, token=manager, variables={"id": contact_id, "p": purpose})
            for purpose in ("analytics", "partner_outreach", "campaign_management") * 3
        ]
        erase = gql(client, ERASE, token=dpo, variables={"id": contact_id})
        answers = await asyncio.gather(*grants[:4], erase, *grants[4:])
        assert all(codes(payload) in ([], ["NOT_FOUND"]) for _, payload in answers), answers
        async with app.state.hub.store.sessions() as session:
            assert await session.get(ErasureRow, contact_id) is not None
            row = await session.get_one(ContactRow, contact_id)
            events = (
                await session.scalars(
                    select(ConsentRow).where(col(ConsentRow.contact_id) == contact_id)
                )
            ).all()
    assert row.erased_at is not None and row.email is None
    newest: dict[str, ConsentRow] = {}
    for event in sorted(events, key=lambda e: (e.recorded_at, e.id)):
        newest[event.purpose] = event
    assert {e.status for e in newest.values()} == {"WITHDRAWN"}
    assert all(e.recorded_at <= newest[e.purpose].recorded_at for e in events)
    assert all(e.evidence is None and e.source == "erased" for e in events)
