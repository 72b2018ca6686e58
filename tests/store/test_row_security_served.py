"""The hub served as roles that row-level security binds (PostgreSQL): requests, a
subscription and the background work see what they should (see `conftest.py`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.app import create_app
from hub.settings import Settings
from hub.sources.store import Store
from hub.store.tenancy import as_system
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql, served
from tests.store.conftest import campaign_ids, tenants_seen
from tests.test_subscriptions import post_days, ready, receive, socket, subscribe, two_campaigns
from tests.test_webhooks import day

SERVING_ROLE = "hub_rls_serve"


async def test_the_hub_serves_tenants_and_runs_system_work_as_a_bound_role(
    role_settings: Settings, make_token: MakeToken, caplog: pytest.LogCaptureFixture
) -> None:
    query = """{ campaigns(first: 50) { edges { node { id } } }
      influencers(first: 100) { edges { node { contacts { id email
        consents { purpose status } } } } } }"""
    with caplog.at_level(logging.WARNING, logger="hub.store.tenancy"):
        async with running_app(role_settings) as (app, client):  # migrates and seeds
            hub = app.state.hub
            seen: dict[str, tuple[int, int, int]] = {}
            for tenant in ("acme", "globex"):
                status, payload = await gql(client, query, token=make_token(tenant=tenant))
                assert (status, codes(payload)) == (200, []), payload
                data = payload["data"]
                contacts = [
                    contact
                    for edge in data["influencers"]["edges"]
                    for contact in edge["node"]["contacts"]
                ]
                seen[tenant] = (
                    len(data["campaigns"]["edges"]),
                    len(contacts),
                    sum(len(contact["consents"]) for contact in contacts),
                )
            with as_system():
                async with hub.engine.connect() as connection:
                    counts = await connection.execute(
                        text("SELECT tenant_id, COUNT(*) FROM campaigns GROUP BY tenant_id")
                    )
                    campaigns = {tenant: count for tenant, count in counts}
            assert {t: s[0] for t, s in seen.items()} == {
                t: campaigns[t] for t in ("acme", "globex")
            }
            assert all(contacts > 0 and consents > 0 for _c, contacts, consents in seen.values())

            # An erasure asked by a tenant's DPO; the audit trail written from that request's
            # context holds every tenant's events and an anonymous caller's.
            contact_id = await _a_contact(client, make_token)
            erase = "mutation ($id: ID!) { eraseContact(id: $id) { contactId complete } }"
            _, erased = await gql(
                client, erase, token=make_token(roles=["dpo"]), variables={"id": contact_id}
            )
            assert erased["data"]["eraseContact"]["contactId"] == contact_id, erased
            _, anonymous = await gql(client, "{ campaigns { edges { cursor } } }")
            assert codes(anonymous) == ["UNAUTHENTICATED"], anonymous
            await hub.audit.flush()  # this test's context is acme's: the last request's
            with as_system():
                async with hub.engine.connect() as connection:
                    tenants = await connection.execute(
                        text("SELECT DISTINCT tenant_id FROM audit_events")
                    )
                    audited = {tenant for (tenant,) in tenants}
                    tombstones = await connection.execute(
                        text("SELECT tenant_id FROM erasures WHERE contact_id = :id"),
                        {"id": contact_id},
                    )
                    assert list(tombstones) == [("acme",)]
            assert hub.audit.buffered == 0
            assert {"acme", "globex"} <= audited
    assert not [r for r in caplog.records if "does not bind" in r.getMessage()]


async def test_a_role_granted_as_the_readme_says_serves_what_the_owner_migrated(
    admin: AsyncEngine,
    role_store: Store,
    role_settings: Settings,
    make_token: MakeToken,
) -> None:
    schema = role_settings.database_schema
    async with admin.begin() as connection:
        await connection.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {SERVING_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
        )
        await connection.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {SERVING_ROLE}'))
    async with role_store.engine.begin() as connection:  # as the owner
        for what, objects in (
            ("SELECT, INSERT, UPDATE, DELETE", "TABLES"),
            ("USAGE, SELECT", "SEQUENCES"),
        ):
            await connection.execute(
                text(
                    f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" '
                    f"GRANT {what} ON {objects} TO {SERVING_ROLE}"
                )
            )
            await connection.execute(
                text(f'GRANT {what} ON ALL {objects} IN SCHEMA "{schema}" TO {SERVING_ROLE}')
            )
    url = make_url(role_settings.database_url).set(username=SERVING_ROLE)
    serving = role_settings.model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    query = """{ campaigns { edges { node { id } } } influencers(first: 100) { edges { node {
      contacts { id email consents { status } } } } } }"""
    async with running_app(serving) as (_app, client):
        _, payload = await gql(client, query, token=make_token(tenant="globex"))
        assert codes(payload) == [], payload
    # The audit writer, as the serving role, wrote the request's decisions at shutdown.
    assert await tenants_seen(role_store.engine, "audit_events") == {"globex"}
    data = payload["data"]
    contacts = [c for e in data["influencers"]["edges"] for c in e["node"]["contacts"]]
    assert sorted(e["node"]["id"] for e in data["campaigns"]["edges"]) == sorted(
        await campaign_ids(role_store.engine, "globex")
    )
    assert contacts and all(contact["consents"] for contact in contacts)


async def test_a_subscription_runs_bound_to_its_callers_tenant(
    role_settings: Settings, make_token: MakeToken
) -> None:
    """Over a real WebSocket (each connection a task of the server's): the subscription's
    task reads its campaign bound to the caller's tenant."""
    app = create_app(role_settings)
    async with served(app, ws="auto") as base:  # migrates and seeds, as the role
        member, _outsider = await two_campaigns(app)
        async with socket(base) as ws:
            await ready(ws, make_token(roles=["analyst"]))
            await subscribe(ws, "live", member.campaign_id)
            await asyncio.sleep(0.2)  # the subscription follows its accounts
            await post_days(base, member.external_id, day("2026-11-03", 4321))
            message = await receive(ws, 2.0)
        async with socket(base) as ws:
            await ready(ws, make_token(roles=["analyst"], tenant="globex"))
            await subscribe(ws, "not-theirs", member.campaign_id)
            refused = await receive(ws)
    assert message["type"] == "next", message
    assert message["payload"]["data"]["metricsUpdated"]["impressions"] == 4321
    assert refused["type"] == "error"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["NOT_FOUND"]


async def _a_contact(client: Any, make_token: MakeToken) -> str:
    query = "{ influencers(first: 100) { edges { node { contacts { id } } } } }"
    _, payload = await gql(client, query, token=make_token())
    return str(
        next(
            contact["id"]
            for edge in payload["data"]["influencers"]["edges"]
            for contact in edge["node"]["contacts"]
        )
    )
