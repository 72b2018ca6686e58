"""Contacts: tenant-scoped reads and `upsertContact` deduplicated by normalised email."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from starlette.applications import Starlette

from hub.settings import Settings
from hub.store.tables import ContactRow
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

UPSERT = """mutation ($input: ContactInput!) {
  upsertContact(input: $input) { id fullName email phone role influencer { id } } }"""
CONTACTS = """{ influencers(first: 100) { edges { node { contacts { id email } } } } }"""
GRANT = """mutation ($id: ID!, $p: String!) {
  grantConsent(contactId: $id, purpose: $p, source: "test") { status } }"""
WITHDRAW = """mutation ($id: ID!, $p: String!) {
  withdrawConsent(contactId: $id, purpose: $p) { status } }"""


async def _contact_ids(client: httpx.AsyncClient, token: str) -> set[str]:
    _, payload = await gql(client, CONTACTS, token=token)
    return {
        contact["id"]
        for edge in payload["data"]["influencers"]["edges"]
        for contact in edge["node"]["contacts"]
    }


async def _grant(client: httpx.AsyncClient, token: str, contact_id: str) -> None:
    mutation = """mutation ($id: ID!) { grantConsent(contactId: $id,
      purpose: "campaign_management", source: "test") { status } }"""
    _, payload = await gql(client, mutation, token=token, variables={"id": contact_id})
    assert payload["data"]["grantConsent"]["status"] == "GRANTED", payload


async def _upsert(
    client: httpx.AsyncClient, token: str, **fields: Any
) -> tuple[int, dict[str, Any]]:
    return await gql(client, UPSERT, token=token, variables={"input": fields})


async def test_upsert_with_the_same_email_updates_one_contact(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    _, created = await _upsert(
        client, token, email="Ola.Nowak@Example.com", fullName="Ola Nowak", phone="+48 600 100 200"
    )
    await _grant(client, token, created["data"]["upsertContact"]["id"])
    _, again = await _upsert(client, token, email="  ola.nowak@example.COM ", role="manager")
    first, second = created["data"]["upsertContact"], again["data"]["upsertContact"]
    assert first["id"] == second["id"]
    assert second["fullName"] == "Ola Nowak"
    assert second["role"] == "manager"
    assert second["email"] == "ola.nowak@example.COM"
    _, read = await gql(client, f'{{ contact(id: "{first["id"]}") {{ email role }} }}', token=token)
    assert read["data"]["contact"] == {"email": "ola.nowak@example.COM", "role": "manager"}


async def test_the_same_email_in_another_tenant_is_another_contact(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    _, acme = await _upsert(client, make_token(tenant="acme"), email="shared@example.com")
    _, globex = await _upsert(client, make_token(tenant="globex"), email="shared@example.com")
    acme_id = acme["data"]["upsertContact"]["id"]
    assert acme_id != globex["data"]["upsertContact"]["id"]
    _, read = await gql(
        client, f'{{ contact(id: "{acme_id}") {{ id }} }}', token=make_token(tenant="globex")
    )
    assert read["data"]["contact"] is None


@pytest.mark.parametrize(
    ("fields", "argument"),
    [
        ({"email": "not-an-email"}, "input.email"),
        ({"email": "a@example.com", "phone": "call me"}, "input.phone"),
        ({"fullName": "No Email"}, "input.email"),
        ({"id": "con_zz", "email": "b@example.com"}, "input.id"),
        ({"email": "c@example.com", "influencerId": "inf_0000000000000000"}, "input.influencerId"),
    ],
)
async def test_invalid_contact_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, make_token: MakeToken, fields: dict[str, Any], argument: str
) -> None:
    token = make_token()
    before = await _contact_ids(client, token)
    _, payload = await _upsert(client, token, **fields)
    assert codes(payload)[0] in ("BAD_USER_INPUT", "NOT_FOUND")
    assert payload["errors"][0]["extensions"]["argument"] == argument
    assert await _contact_ids(client, token) == before


async def test_an_email_of_another_contact_cannot_be_taken_over(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    _, one = await _upsert(client, token, email="one@example.com")
    _, two = await _upsert(client, token, email="two@example.com")
    two_id = two["data"]["upsertContact"]["id"]
    await _grant(client, token, two_id)
    _, clash = await _upsert(client, token, id=two_id, email="ONE@example.com")
    assert codes(clash) == ["BAD_USER_INPUT"]
    _, read = await gql(client, f'{{ contact(id: "{two_id}") {{ email }} }}', token=token)
    assert read["data"]["contact"]["email"] == "two@example.com"
    assert one["data"]["upsertContact"]["id"] != two_id


async def test_contacts_and_consents_are_read_in_the_callers_tenant(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    acme = await _contact_ids(client, make_token(tenant="acme"))
    globex = await _contact_ids(client, make_token(tenant="globex"))
    assert acme and globex and not acme & globex
    target = sorted(acme)[0]
    query = f'{{ contact(id: "{target}") {{ consents {{ purpose status lawfulBasis }} }} }}'
    _, payload = await gql(client, query, token=make_token(tenant="acme"))
    statuses = {c["status"] for c in payload["data"]["contact"]["consents"]}
    assert statuses <= {"GRANTED", "WITHDRAWN", "EXPIRED"} and statuses


async def test_a_campaign_limited_token_cannot_reach_other_contacts_by_email(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    _, campaigns = await gql(
        client, "{ campaigns(first: 1) { edges { node { id } } } }", token=manager
    )
    allowed = campaigns["data"]["campaigns"]["edges"][0]["node"]["id"]
    _, outside = await _upsert(client, manager, email="outside@example.com", company="Before")
    outside_id = outside["data"]["upsertContact"]["id"]
    limited = make_token(campaigns=[allowed])
    _, payload = await _upsert(client, limited, email="OUTSIDE@example.com", company="PWNED")
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert "Before" not in str(payload) and "outside@" not in str(payload)
    _, read = await gql(client, f'{{ contact(id: "{outside_id}") {{ company }} }}', token=manager)
    assert read["data"]["contact"]["company"] == "Before"


async def test_a_campaign_limited_token_learns_only_that_an_email_or_crm_id_is_unavailable(
    settings: Settings, make_token: MakeToken
) -> None:
    erase = "mutation ($id: ID!) { eraseContact(id: $id) { contactId } }"
    async with running_app(settings) as (app, client):
        manager = make_token()
        _, campaigns = await gql(
            client,
            "{ campaigns(first: 1) { edges { node { id members(first: 1) { edges { node {"
            " influencer { id } } } } } } } }",
            token=manager,
        )
        campaign = campaigns["data"]["campaigns"]["edges"][0]["node"]
        influencer = campaign["members"]["edges"][0]["node"]["influencer"]["id"]
        limited = make_token(campaigns=[campaign["id"]])
        await _upsert(client, manager, email="outside@example.com", crmId="crm-acme-07777")
        _, gone = await _upsert(client, manager, email="gone@example.com", crmId="crm-acme-07778")
        await gql(
            client,
            erase,
            token=make_token(roles=["dpo"]),
            variables={"id": gone["data"]["upsertContact"]["id"]},
        )
        await _upsert(
            client,
            manager,
            email="inside@example.com",
            crmId="crm-acme-07779",
            influencerId=influencer,
        )
        attempts = [
            {"email": "outside@example.com"},  # held outside the token's campaigns
            {"email": "GONE@example.com"},  # an erased person's
            {"email": "fresh1@example.com", "crmId": "crm-acme-07777"},
            {"email": "fresh2@example.com", "crmId": "crm-acme-07778"},
            {"email": "fresh3@example.com", "crmId": "crm-acme-07779"},  # held in scope
        ]
        answers = []
        for fields in attempts:
            _, payload = await _upsert(client, limited, influencerId=influencer, **fields)
            assert codes(payload) == ["BAD_USER_INPUT"], (fields, payload)
            error = payload["errors"][0]
            answers.append((error["message"], error["extensions"]["argument"]))
        _, unlimited = await _upsert(
            client, manager, email="fresh4@example.com", crmId="crm-acme-07777"
        )
        async with app.state.hub.store.sessions() as session:
            fresh = (
                await session.scalars(
                    select(col(ContactRow.id)).where(col(ContactRow.email).like("fresh%"))
                )
            ).all()
    assert len(set(answers)) == 1
    message, argument = answers[0]
    assert argument == "input"
    assert not {"contact", "erased", "tenant"} & set(message.lower().replace(".", "").split())
    assert unlimited["errors"][0]["extensions"]["argument"] == "input.crmId"
    assert fresh == []


async def _by_crm_id(app: Starlette, tenant: str, crm_id: str) -> str:
    async with app.state.hub.store.sessions() as session:
        found: str = await session.scalar(
            select(col(ContactRow.id)).where(
                col(ContactRow.tenant_id) == tenant, col(ContactRow.crm_id) == crm_id
            )
        )
    return found


ENRICHED = """query ($id: ID!) { contact(id: $id) { jobTitle company } }"""


async def test_a_crm_id_belongs_to_one_contact_of_a_tenant(
    settings: Settings, make_token: MakeToken
) -> None:
    # The demo's first acme contact consents to campaign management, the second withdrew.
    async with running_app(settings) as (app, client):
        consented = await _by_crm_id(app, "acme", "crm-acme-00000")
        withdrawn = await _by_crm_id(app, "acme", "crm-acme-00001")
        manager = make_token()
        _, before = await gql(client, ENRICHED, token=manager, variables={"id": consented})
        _, taken = await _upsert(client, manager, id=consented, crmId="crm-acme-00001")
        _, created = await _upsert(
            client, manager, email="new.person@example.com", crmId="crm-acme-00001"
        )
        _, after = await gql(client, ENRICHED, token=manager, variables={"id": consented})
        _, theirs = await gql(client, ENRICHED, token=manager, variables={"id": withdrawn})
        _, elsewhere = await _upsert(
            client, make_token(tenant="globex"), email="x@example.com", crmId="crm-acme-00001"
        )
        async with app.state.hub.store.sessions() as session:
            holders = (
                await session.scalars(
                    select(col(ContactRow.email)).where(col(ContactRow.crm_id) == "crm-acme-00001")
                )
            ).all()
    assert codes(taken) == codes(created) == ["BAD_USER_INPUT"]
    assert taken["errors"][0]["extensions"]["argument"] == "input.crmId"
    own, other = after["data"]["contact"], theirs["data"]["contact"]
    assert after["data"] == before["data"] and "***" not in own["jobTitle"]
    assert "***" in other["jobTitle"]  # the withdrawn person's title stays masked
    assert codes(elsewhere) == []
    assert len(holders) == 2 and "new.person@example.com" not in holders


async def test_a_crm_record_moved_to_another_contact_is_purged_with_its_new_holder(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        crm_url = app.state.hub.upstreams.simulators.urls["crm"]
        holder = await _by_crm_id(app, "acme", "crm-acme-00001")
        taker = await _by_crm_id(app, "acme", "crm-acme-00000")
        manager = make_token()
        # The record is read (and cached) as its first holder's.
        await gql(client, ENRICHED, token=manager, variables={"id": holder})
        _, released = await _upsert(client, manager, id=holder, crmId="crm-acme-09999")
        _, moved = await _upsert(client, manager, id=taker, crmId="crm-acme-00001")
        assert codes(released) == codes(moved) == []
        _, read = await gql(client, ENRICHED, token=manager, variables={"id": taker})
        assert read["data"]["contact"]["jobTitle"]
        async with httpx.AsyncClient(
            base_url=crm_url, headers={"Authorization": "Bearer sim-dev-key"}
        ) as crm:
            assert (await crm.delete("/v1/contacts/crm-acme-00001")).status_code == 204
        # A consent change purges what is cached of the new holder, this record included.
        variables = {"id": taker, "p": "campaign_management"}
        await gql(client, WITHDRAW, token=manager, variables=variables)
        await gql(client, GRANT, token=manager, variables=variables)
        _, again = await gql(client, ENRICHED, token=manager, variables={"id": taker})
    assert again["data"]["contact"] == {"jobTitle": None, "company": None}
