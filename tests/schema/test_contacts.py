"""Contacts: tenant-scoped reads and `upsertContact` deduplicated by normalised email."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import MakeToken
from tests.helpers import codes, gql

UPSERT = """mutation ($input: ContactInput!) {
  upsertContact(input: $input) { id fullName email phone role influencer { id } } }"""
CONTACTS = """{ influencers(first: 100) { edges { node { contacts { id email } } } } }"""


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
