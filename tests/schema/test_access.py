"""Field authorization from `policies/access.yaml`, enforced by the executor on every path."""

from __future__ import annotations

import httpx
import jwt
from sqlalchemy import select
from sqlmodel import col

from hub.settings import Settings
from hub.store.tables import AuditEventRow
from tests.conftest import TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, gql

PARTNER = {"roles": ["partner"], "scopes": ["campaigns:read", "influencers:read"]}


async def _first_contact(client: httpx.AsyncClient, make_token: MakeToken) -> str:
    _, payload = await gql(
        client,
        "{ influencers(first: 100) { edges { node { contacts { id } } } } }",
        token=make_token(),
    )
    ids: list[str] = [
        contact["id"]
        for edge in payload["data"]["influencers"]["edges"]
        for contact in edge["node"]["contacts"]
    ]
    return ids[0]


async def test_a_partner_without_contacts_read_gets_forbidden_and_the_rest(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _first_contact(sqlite_client, make_token)
    query = f'{{ campaigns {{ totalCount }} contact(id: "{contact_id}") {{ email fullName }} }}'
    status, payload = await gql(sqlite_client, query, token=make_token(**PARTNER))
    assert status == 200
    assert payload["data"]["campaigns"]["totalCount"] == 6
    assert payload["data"]["contact"] is None
    assert codes(payload) == ["FORBIDDEN"]
    assert payload["errors"][0]["path"] == ["contact"]
    assert payload["errors"][0]["extensions"]["coordinate"] == "Query.contact"


async def test_nested_personal_fields_are_refused_through_aliases_and_fragments(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = """{ c: campaigns(first: 1) { edges { node { name ...M } } } }
      fragment M on Campaign { members(first: 1) { edges { node {
        who: influencer { handle ... on Influencer { people: contacts { email } } } } } } }"""
    _, payload = await gql(sqlite_client, query, token=make_token(**PARTNER))
    member = payload["data"]["c"]["edges"][0]["node"]["members"]["edges"][0]["node"]
    assert member["who"] is None
    assert codes(payload) == ["FORBIDDEN"]
    assert payload["errors"][0]["path"][-1] == "people"


async def test_write_scopes_alone_do_not_read_back_data_and_change_nothing(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _first_contact(sqlite_client, make_token)
    token = make_token(scopes=["contacts:write"])
    query = f'mutation {{ upsertContact(input: {{id: "{contact_id}", role: "x"}}) {{ email }} }}'
    status, payload = await gql(sqlite_client, query, token=token)
    assert status == 400 and "data" not in payload
    assert codes(payload) == ["FORBIDDEN"]
    assert payload["errors"][0]["extensions"]["coordinates"] == ["Contact.email"]
    assert "@" not in str(payload)
    _, read = await gql(
        sqlite_client, f'{{ contact(id: "{contact_id}") {{ role }} }}', token=make_token()
    )
    assert read["data"]["contact"]["role"] != "x"


async def test_a_mutation_asking_for_a_field_it_may_not_read_is_refused_before_it_writes(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    writer = make_token(scopes=["campaigns:write", "campaigns:read"])
    narrow = make_token(scopes=["campaigns:write"], subject="writer-2")
    create = """mutation ($n: String!) {
      a: createCampaign(input: {name: $n, brand: "B"}) { id }
      b: createCampaign(input: {name: $n, brand: "B"}) { ... on Campaign { budget { amount } } }
    }"""
    count = "{ campaigns { totalCount } }"
    async with running_app(sqlite_settings) as (app, client):
        _, before = await gql(client, count, token=make_token())
        status, refused = await gql(client, create, token=narrow, variables={"n": "Refused"})
        json_status, json_refused = await gql(
            client, create, token=narrow, variables={"n": "Refused"}, accept="application/json"
        )
        _, after = await gql(client, count, token=make_token())
        _, allowed = await gql(client, create, token=writer, variables={"n": "Kept"})
        _, last = await gql(client, count, token=make_token())
        await app.state.hub.audit.flush()
        async with app.state.hub.store.sessions() as session:
            denials = (
                await session.scalars(
                    select(col(AuditEventRow.coordinate)).where(
                        col(AuditEventRow.decision) == "denied",
                        col(AuditEventRow.principal) == "writer-2",
                    )
                )
            ).all()
    total = before["data"]["campaigns"]["totalCount"]
    assert status == 400 and "data" not in refused and codes(refused) == ["FORBIDDEN"]
    assert refused["errors"][0]["extensions"]["coordinates"] == ["Campaign.budget", "Campaign.id"]
    assert json_status == 200 and "data" not in json_refused
    assert codes(json_refused) == ["FORBIDDEN"]
    assert after["data"]["campaigns"]["totalCount"] == total
    assert codes(allowed) == [] and allowed["data"]["a"]["id"]
    assert last["data"]["campaigns"]["totalCount"] == total + 2
    assert sorted(denials) == ["Campaign.budget", "Campaign.budget", "Campaign.id", "Campaign.id"]


async def test_an_empty_scope_claim_grants_nothing_beyond_public_fields(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    full = jwt.decode(make_token(), options={"verify_signature": False})
    empty = jwt.encode({**full, "scope": ""}, TEST_SECRET, algorithm="HS256")
    contact_id = await _first_contact(sqlite_client, make_token)
    query = f'{{ me {{ roles scopes }} contact(id: "{contact_id}") {{ id }} }}'
    _, narrowed = await gql(sqlite_client, query, token=empty)
    _, unnarrowed = await gql(sqlite_client, query, token=make_token())
    assert narrowed["data"] == {"me": {"roles": ["manager"], "scopes": []}, "contact": None}
    assert codes(narrowed) == ["FORBIDDEN"]
    assert unnarrowed["data"]["contact"] == {"id": contact_id}


async def test_introspection_needs_the_introspect_scope(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = "{ __schema { queryType { name } } }"
    _, refused = await gql(sqlite_client, query, token=make_token(**PARTNER))
    allowed_token = make_token(roles=["partner"], scopes=["schema:introspect"])
    _, allowed = await gql(sqlite_client, query, token=allowed_token)
    anonymous_status, anonymous = await gql(sqlite_client, query)
    assert codes(refused) == ["FORBIDDEN"] and refused["data"] is None
    assert allowed["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    assert anonymous_status == 401 and codes(anonymous) == ["UNAUTHENTICATED"]


async def test_field_suggestions_are_hidden_from_callers_who_may_not_introspect(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    _, partner = await gql(sqlite_client, "{ campaing }", token=make_token(**PARTNER))
    _, manager = await gql(sqlite_client, "{ campaing }", token=make_token())
    assert partner["errors"][0]["message"] == "Cannot query field 'campaing' on type 'Query'."
    assert "Did you mean 'campaign'" in manager["errors"][0]["message"]


async def test_every_denial_is_on_the_audit_trail(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        token = make_token(subject="partner-7", client_id="crm-sync", **PARTNER)
        await gql(
            client,
            '{ a: contact(id: "con_0000000000000001") { id } '
            'b: contact(id: "con_0000000000000002") { id } }',
            token=token,
        )
        await app.state.hub.audit.flush()
        async with app.state.hub.store.sessions() as session:
            rows = (await session.scalars(select(AuditEventRow))).all()
    assert [(r.coordinate, r.decision, r.principal, r.client_id, r.tenant_id) for r in rows] == [
        ("Query.contact", "denied", "partner-7", "crm-sync", "acme")
    ]


async def test_entities_tell_nothing_about_types_the_caller_may_not_read(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _first_contact(sqlite_client, make_token)
    query = (
        f'{{ _entities(representations: [{{__typename: "Contact", id: "{contact_id}"}}]) '
        "{ __typename } }"
    )
    _, partner = await gql(sqlite_client, query, token=make_token(**PARTNER))
    _, manager = await gql(sqlite_client, query, token=make_token())
    assert codes(partner) == ["FORBIDDEN"]
    assert partner["data"] is None
    assert manager["data"] == {"_entities": [{"__typename": "Contact"}]}
