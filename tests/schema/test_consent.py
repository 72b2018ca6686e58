"""Consent-aware personal data: every path, warm caches, withdrawal, audit of every value."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from hub.settings import Settings
from hub.store.tables import AuditEventRow
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, fill_audit_buffer, gql, refusing_audit_writes

GRANT = """mutation ($id: ID!, $p: String!) {
  grantConsent(contactId: $id, purpose: $p, source: "web form", evidence: "doc-1") {
    id purpose status lawfulBasis source evidence expiresAt } }"""
WITHDRAW = """mutation ($id: ID!, $p: String!) {
  withdrawConsent(contactId: $id, purpose: $p) { purpose status withdrawnAt } }"""
DPO = {"roles": ["dpo", "manager"]}
KEPT = 60.0
"""`HUB_RESPONSE_CACHE_TTL_S` of the runs that keep whole answers."""


@pytest.fixture(params=[0.0, KEPT], ids=["answers-not-kept", "answers-kept"])
def kept_s(request: pytest.FixtureRequest) -> float:
    """Every rule here holds whether or not the hub keeps whole answers (the response cache)."""
    value: float = request.param
    return value


@pytest.fixture
async def client(settings: Settings, kept_s: float) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings.model_copy(update={"response_cache_ttl_s": kept_s})) as (
        _app,
        client,
    ):
        yield client


async def _new_contact(client: httpx.AsyncClient, token: str, email: str) -> tuple[str, str]:
    _, influencers = await gql(
        client,
        "{ campaigns(first: 1) { edges { node { members(first: 1) { edges { node {"
        " influencer { id } } } } } } } }",
        token=token,
    )
    influencer = influencers["data"]["campaigns"]["edges"][0]["node"]["members"]["edges"][0][
        "node"
    ]["influencer"]["id"]
    mutation = """mutation ($input: ContactInput!) { upsertContact(input: $input) { id } }"""
    fields = {
        "email": email,
        "fullName": "Ola Nowak",
        "phone": "+48 600 100 506",
        "influencerId": influencer,
    }
    _, payload = await gql(client, mutation, token=token, variables={"input": fields})
    return payload["data"]["upsertContact"]["id"], influencer


def _paths(contact_id: str, influencer_id: str) -> dict[str, str]:
    """Every way a query can reach the contact's email."""
    representation = f'{{__typename: "Contact", id: "{contact_id}"}}'
    return {
        "direct": f'{{ contact(id: "{contact_id}") {{ id email }} }}',
        "alias": f'{{ c: contact(id: "{contact_id}") {{ id mail: email }} }}',
        "fragment": f'{{ contact(id: "{contact_id}") {{ ...P }} }} '
        "fragment P on Contact { id email }",
        "inline": f'{{ contact(id: "{contact_id}") {{ ... on Contact {{ id email }} }} }}',
        "nested": f'{{ influencer(id: "{influencer_id}") {{ contacts {{ id email }} }} }}',
        "entities": f"{{ _entities(representations: [{representation}]) "
        "{ ... on Contact { id email } } }",
    }


def _emails(value: Any, contact_id: str) -> list[str]:
    """The email values the answer gives for this contact, under any alias."""
    if isinstance(value, dict):
        own = [
            v
            for k, v in value.items()
            if k in ("email", "mail") and v and value.get("id") == contact_id
        ]
        return own + [e for v in value.values() for e in _emails(v, contact_id)]
    if isinstance(value, list):
        return [e for item in value for e in _emails(item, contact_id)]
    return []


async def test_personal_data_follows_consent_on_every_path(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    contact_id, influencer_id = await _new_contact(client, manager, "ola@example.com")
    paths = _paths(contact_id, influencer_id)
    for name, query in paths.items():
        _, masked = await gql(client, query, token=manager)
        assert _emails(masked["data"], contact_id) == ["o***@example.com"], name
    _, granted = await gql(
        client, GRANT, token=manager, variables={"id": contact_id, "p": "campaign_management"}
    )
    assert granted["data"]["grantConsent"]["status"] == "GRANTED"
    for name, query in paths.items():
        _, shown = await gql(client, query, token=manager)
        assert _emails(shown["data"], contact_id) == ["ola@example.com"], name
    _, withdrawn = await gql(
        client, WITHDRAW, token=manager, variables={"id": contact_id, "p": "campaign_management"}
    )
    assert withdrawn["data"]["withdrawConsent"]["status"] == "WITHDRAWN"
    for name, query in paths.items():
        _, after = await gql(client, query, token=manager)
        assert "ola@example.com" not in str(after), name
        assert _emails(after["data"], contact_id) == ["o***@example.com"], name


async def test_a_purpose_without_basis_gets_consent_required_at_the_path(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    contact_id, _ = await _new_contact(client, manager, "ana@example.com")
    await gql(
        client, GRANT, token=manager, variables={"id": contact_id, "p": "campaign_management"}
    )
    analyst = make_token(purpose="analytics", roles=["manager"])
    query = f'{{ contact(id: "{contact_id}") {{ id role fullName email phone }} }}'
    _, payload = await gql(client, query, token=analyst)
    assert payload["data"]["contact"] == {
        "id": contact_id,
        "role": None,
        "fullName": None,
        "email": None,
        "phone": None,
    }
    assert codes(payload) == ["CONSENT_REQUIRED"] * 3
    assert sorted(e["path"][-1] for e in payload["errors"]) == ["email", "fullName", "phone"]
    _, none = await gql(client, query, token=make_token(purpose=None))
    assert none["data"]["contact"]["email"] is None


async def test_a_consents_source_and_evidence_follow_the_persons_consent_on_every_path(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    contact_id, influencer_id = await _new_contact(client, manager, "eve@example.com")
    told = """mutation ($id: ID!, $p: String!) { grantConsent(contactId: $id, purpose: $p,
      source: "call with Eve Kowalska", evidence: "eve.kowalska@example.org") {
      status s: source evidence } }"""
    withdrawn = """mutation ($id: ID!, $p: String!) {
      withdrawConsent(contactId: $id, purpose: $p) { status source evidence } }"""
    representation = f'{{__typename: "Contact", id: "{contact_id}"}}'
    paths = {
        "nested": f'{{ contact(id: "{contact_id}") {{ consents {{ source evidence }} }} }}',
        "alias": f'{{ c: contact(id: "{contact_id}") {{ h: consents {{ s: source e: evidence }} }}'
        " }",
        "fragment": f'{{ contact(id: "{contact_id}") {{ consents {{ ...C }} }} }} '
        "fragment C on Consent { source evidence }",
        "influencer": f'{{ influencer(id: "{influencer_id}") {{ contacts {{ consents {{ evidence }}'
        " } } }",
        "entities": f"{{ _entities(representations: [{representation}]) "
        "{ ... on Contact { consents { source evidence } } } }",
    }
    analytics = {"id": contact_id, "p": "analytics"}
    _, granted = await gql(client, told, token=manager, variables=analytics)
    _, ended = await gql(client, withdrawn, token=manager, variables=analytics)
    answers = {"grantConsent": granted, "withdrawConsent": ended}
    for name, query in paths.items():
        _, answers[name] = await gql(client, query, token=manager)
    # The person gave no consent for campaign management, the manager's purpose.
    assert granted["data"]["grantConsent"] == {"status": "GRANTED", "s": None, "evidence": None}
    for name, answer in answers.items():
        assert "Eve" not in str(answer) and "kowalska" not in str(answer), name
        assert "CONSENT_REQUIRED" in codes(answer), name
    await gql(
        client, GRANT, token=manager, variables={"id": contact_id, "p": "campaign_management"}
    )
    for name, query in paths.items():
        _, shown = await gql(client, query, token=manager)
        assert "eve.kowalska@example.org" in str(shown), name
        assert "CONSENT_REQUIRED" not in codes(shown), name
    _, analyst = await gql(client, paths["nested"], token=make_token(purpose="analytics"))
    assert "Eve" not in str(analyst) and "kowalska" not in str(analyst)


async def test_consent_history_is_kept_and_bad_requests_change_nothing(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    contact_id, _ = await _new_contact(client, manager, "hist@example.com")
    variables = {"id": contact_id, "p": "analytics"}
    _, never = await gql(client, WITHDRAW, token=manager, variables=variables)
    assert codes(never) == ["NOT_FOUND"]
    await gql(client, GRANT, token=manager, variables=variables)
    await gql(client, WITHDRAW, token=manager, variables=variables)
    _, twice = await gql(client, WITHDRAW, token=manager, variables=variables)
    assert twice["data"]["withdrawConsent"]["status"] == "WITHDRAWN"
    await gql(client, GRANT, token=manager, variables=variables)
    _, bad = await gql(client, GRANT, token=manager, variables={"id": contact_id, "p": "spam"})
    assert codes(bad) == ["BAD_USER_INPUT"]
    query = f'{{ contact(id: "{contact_id}") {{ consents {{ purpose status }} }} }}'
    _, payload = await gql(client, query, token=manager)
    assert [c["status"] for c in payload["data"]["contact"]["consents"]] == [
        "GRANTED",
        "WITHDRAWN",
        "GRANTED",
    ]
    analyst = make_token(roles=["analyst"])
    _, refused = await gql(client, GRANT, token=analyst, variables=variables)
    assert codes(refused) == ["FORBIDDEN"]


async def test_every_personal_value_that_leaves_has_exactly_one_audit_event(
    sqlite_settings: Settings, make_token: MakeToken, kept_s: float
) -> None:
    rng = random.Random(11)
    settings = sqlite_settings.model_copy(update={"response_cache_ttl_s": kept_s})
    async with running_app(settings) as (app, client):
        manager = make_token(subject="auditor-check", client_id="dash")
        _, listing = await gql(
            client,
            "{ influencers(first: 100) { edges { node { contacts { id } } } } }",
            token=manager,
        )
        ids = [
            c["id"] for e in listing["data"]["influencers"]["edges"] for c in e["node"]["contacts"]
        ]
        returned: list[tuple[str, str, str]] = []
        for _ in range(12):
            chosen = rng.sample(ids, 3)
            purpose = rng.choice(["campaign_management", "analytics", "partner_outreach"])
            token = make_token(subject="auditor-check", client_id="dash", purpose=purpose)
            fields = rng.sample(["fullName", "email", "phone"], rng.randint(1, 3))
            query = (
                "{ "
                + " ".join(
                    f'c{i}: contact(id: "{cid}") {{ id {" ".join(fields)} }}'
                    for i, cid in enumerate(chosen)
                )
                + " }"
            )
            for _ in range(2):  # the second answer may be a kept one: audited all the same
                _, payload = await gql(client, query, token=token)
                for node in payload["data"].values():
                    for field in fields:
                        if node[field] is not None:
                            returned.append((node["id"], f"Contact.{field}", purpose))
        await app.state.hub.audit.flush()
        async with app.state.hub.store.sessions() as session:
            rows = (
                await session.scalars(
                    select(AuditEventRow).where(
                        col(AuditEventRow.principal) == "auditor-check",
                        col(AuditEventRow.decision).in_(["allowed", "masked"]),
                    )
                )
            ).all()
    written = sorted((r.subject or "", r.coordinate, r.purpose or "") for r in rows)
    assert returned, "the workload must return personal values"
    assert written == sorted(returned)


@pytest.mark.parametrize("purpose", ["campaign_management", "analytics", "partner_outreach"])
async def test_demo_subjects_without_consent_never_show_a_value(
    client: httpx.AsyncClient, make_token: MakeToken, purpose: str
) -> None:
    token = make_token(purpose=purpose, roles=["manager"])
    query = """{ influencers(first: 100) { edges { node { contacts {
      id email fullName phone consents { purpose status } } } } } }"""
    _, payload = await gql(client, query, token=token)
    seen = {True: 0, False: 0}
    for edge in payload["data"]["influencers"]["edges"]:
        for contact in edge["node"]["contacts"]:
            states = [c for c in contact["consents"] if c["purpose"] == purpose]
            granted = bool(states) and states[-1]["status"] == "GRANTED"
            seen[granted] += 1
            if granted:
                assert "***" not in (contact["email"] or ""), (contact, purpose)
            else:
                for field in ("email", "fullName", "phone"):
                    assert contact[field] is None or "***" in contact[field], (contact, purpose)
    assert seen[True] > 0 and seen[False] > 0


async def test_a_withdrawal_on_one_replica_holds_on_the_other(
    tmp_path: Path, make_token: MakeToken, kept_s: float
) -> None:
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; two replicas share their cache in Redis")
    common: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/shared.db",
        "policies_dir": ROOT / "policies",
        "jwt_secret": TEST_SECRET,
        "demo": True,
        "cache_url": redis_url,
        "cache_namespace": f"hub-test-{uuid.uuid4().hex[:8]}",
        "response_cache_ttl_s": kept_s,
    }
    manager = make_token()
    async with running_app(Settings(**common)) as (_a, one):
        contact_id, _ = await _new_contact(one, manager, "replica@example.com")
        variables = {"id": contact_id, "p": "campaign_management"}
        await gql(one, GRANT, token=manager, variables=variables)
        async with running_app(Settings(**common)) as (_b, two):
            query = f'{{ contact(id: "{contact_id}") {{ id email phone jobTitle company }} }}'
            for _ in range(2):  # the second answer is a kept one where answers are kept
                _, warm = await gql(two, query, token=manager)
                assert warm["data"]["contact"]["email"] == "replica@example.com"
            await gql(one, WITHDRAW, token=manager, variables=variables)
            _, after = await gql(two, query, token=manager)
    assert after["data"]["contact"]["email"] == "r***@example.com"
    assert "replica@example.com" not in str(after)
    assert after["data"]["contact"]["phone"] in (None, "+48 *** *** 506")


async def test_with_the_audit_trail_full_a_consented_email_is_withheld_until_the_store_is_back(
    sqlite_settings: Settings, make_token: MakeToken, kept_s: float
) -> None:
    settings = sqlite_settings.model_copy(
        update={"response_cache_ttl_s": kept_s, "audit_buffer_max_events": 20}
    )
    async with running_app(settings) as (app, client):
        hub = app.state.hub
        manager = make_token(subject="full-trail")
        contact_id, _ = await _new_contact(client, manager, "full@example.com")
        await gql(
            client, GRANT, token=manager, variables={"id": contact_id, "p": "campaign_management"}
        )
        query = f'{{ contact(id: "{contact_id}") {{ id email }} }}'
        _, served = await gql(client, query, token=manager)  # kept, where answers are kept
        assert served["data"]["contact"]["email"] == "full@example.com"
        await hub.audit.flush()
        async with refusing_audit_writes(hub.engine):
            assert fill_audit_buffer(hub.audit) == 20
            _, withheld = await gql(client, query, token=manager)
            metrics = (await client.get("/metrics")).text
        assert withheld["data"]["contact"] == {"id": contact_id, "email": None}
        assert codes(withheld) == ["SOURCE_UNAVAILABLE"]
        assert withheld["errors"][0]["extensions"]["source"] == "audit"
        assert withheld["errors"][0]["path"] == ["contact", "email"]
        assert "full@example.com" not in str(withheld)
        # The 21st filler and the email's decision; a kept answer is not tried without room.
        assert "hub_audit_events_dropped_total 2.0\n" in metrics
        assert await hub.audit.flush() == 20
        _, back = await gql(client, query, token=manager)
        assert back["data"]["contact"]["email"] == "full@example.com"
        await hub.audit.flush()
        async with hub.store.sessions() as session:
            rows = (await session.scalars(select(AuditEventRow))).all()
    assert sum(row.principal == "filler" for row in rows) == 20
    reads = [
        row for row in rows if row.principal == "full-trail" and row.coordinate == "Contact.email"
    ]
    assert [row.decision for row in reads] == ["allowed", "allowed"]
