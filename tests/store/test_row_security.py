"""Row-level security on PostgreSQL: a statement without its tenant filter sees one tenant.

The test server's `postgres` is a superuser, whom row-level security never binds: these tests
connect as a role of their own (NOSUPERUSER NOBYPASSRLS) that migrates its store, and so owns
the tables, as `hub migrate` would run as the owner.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel, col

import hub.sources.store as store_module
from hub.policy.rows import RowScope
from hub.settings import Settings
from hub.sources.store import Store
from hub.store import migrate, seed
from hub.store.engine import create_engine
from hub.store.tables import AuditEventRow, CampaignMemberRow, CampaignRow
from hub.store.tenancy import as_system, bind_tenant, warn_if_unbound
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, gql

ROLE = "hub_rls_test"
SERVING_ROLE = "hub_rls_serve"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
TENANT_OWNED = {
    "campaigns",
    "campaign_members",
    "contacts",
    "consents",
    "erasures",
    "erasure_tasks",
    "audit_events",
}
T = TypeVar("T")


def _admin_url() -> str:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        pytest.skip("HUB_TEST_DATABASE_URL is not set; PostgreSQL tests need a server")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def admin() -> AsyncIterator[AsyncEngine]:
    """The server's superuser, which row-level security does not bind."""
    engine = create_async_engine(_admin_url())
    yield engine
    await engine.dispose()


@pytest.fixture
async def role_settings(admin: AsyncEngine) -> AsyncIterator[Settings]:
    """Settings on a schema of this test's own, as a role that row-level security binds."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    async with admin.begin() as connection:
        # Made once per server; tests running at the same time may both try.
        await connection.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
        )
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.execute(text(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO {ROLE}'))
    url = make_url(_admin_url()).set(username=ROLE).render_as_string(hide_password=False)
    try:
        yield Settings(
            database_url=url,
            database_schema=schema,
            policies_dir=ROOT / "policies",
            jwt_secret=TEST_SECRET,
            demo=True,
        )
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
async def store(role_settings: Settings) -> AsyncIterator[Store]:
    """The role's store, migrated and seeded (in system mode: nothing is bound here)."""
    engine = create_engine(role_settings)
    reads = create_engine(role_settings, reads=True)
    await migrate.upgrade(engine)
    await seed.seed(engine, seed.SeedPlan(influencers=30, campaigns=6, contacts_per_tenant=6))
    yield Store(engine, reads=reads)
    await engine.dispose()
    await reads.dispose()


async def _bound(tenant: str | None, work: Callable[[], Awaitable[T]]) -> T:
    """`work` in a task bound to `tenant`, as a request's would be (the caller's stays as is)."""
    context = contextvars.copy_context()
    context.run(bind_tenant, tenant)

    async def run() -> T:
        return await work()

    return await asyncio.create_task(run(), context=context)


async def _tenants_seen(engine: AsyncEngine, table: str) -> set[str | None]:
    column = "c.tenant_id" if table == "campaign_members" else "t.tenant_id"
    join = " JOIN campaigns c ON c.id = t.campaign_id" if table == "campaign_members" else ""
    async with engine.connect() as connection:
        rows = await connection.execute(text(f"SELECT DISTINCT {column} FROM {table} t{join}"))
        return {tenant for (tenant,) in rows}


async def test_every_table_with_tenant_rows_has_forced_row_security(store: Store) -> None:
    async with store.engine.connect() as connection:
        # Tables with a tenant_id, and tables whose rows belong to those rows' tenant.
        owned = {
            table
            for (table,) in await connection.execute(
                text(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND column_name = 'tenant_id'"
                )
            )
        }
        references = list(
            await connection.execute(
                text(
                    "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text "
                    "FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
                    "WHERE c.contype = 'f' AND r.relnamespace = current_schema()::regnamespace"
                )
            )
        )
        owned |= {child for child, parent in references if parent == "campaigns"}
        secured = {
            table: (enabled, forced)
            for table, enabled, forced in await connection.execute(
                text(
                    "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
                )
            )
        }
        policies = {
            table
            for (table,) in await connection.execute(
                text(
                    "SELECT tablename FROM pg_policies WHERE schemaname = current_schema() "
                    "AND policyname = 'tenant_isolation' AND cmd = 'ALL'"
                )
            )
        }
    declared = {t.name for t in SQLModel.metadata.sorted_tables if "tenant_id" in t.columns}
    assert owned >= TENANT_OWNED | declared
    assert {table: secured[table] for table in owned} == {table: (True, True) for table in owned}
    assert policies == owned
    assert {table for table, state in secured.items() if state != (False, False)} == owned


async def test_reads_without_the_tenant_filter_see_only_the_bound_tenants_rows(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("campaign_scope", "contact_scope"):
        monkeypatch.setattr(store_module, name, lambda _scope: [])
    monkeypatch.setattr(
        store_module,
        "scoped_campaign_ids",
        lambda _scope, _ids: select(col(CampaignRow.id)),
    )
    # Every tenant's rows are in the store: unbound (system mode) reads see all three.
    for table in TENANT_OWNED - {"erasures", "erasure_tasks", "audit_events"}:
        assert await _tenants_seen(store.engine, table) == {"acme", "globex", "initech"}

    async def reads() -> tuple[set[str], set[str], set[str], set[str]]:
        # The wrong tenant: only the consents' own filter uses it, and finds none of the
        # bound tenant's consents (the application's filter and the policy both hold).
        scope = RowScope(tenant="globex", campaigns=None)
        campaigns = (await store.campaign_page(scope, status=None, first=100, after=None)).rows
        ids = [row.id for row in campaigns]
        members = await store.member_pages(scope, ids, first=100, after=None)
        influencers = [m.influencer_id for page in members.values() for m in page.rows]
        contacts = await store.contacts_by_influencer(scope, influencers)
        contact_ids = [c.id for rows in contacts.values() for c in rows]
        consents = await store.consents_by_contact(scope, contact_ids)
        return (
            {row.tenant_id for row in campaigns},
            {c.tenant_id for rows in contacts.values() for c in rows},
            {c.tenant_id for rows in consents.values() for c in rows},
            set(members) - set(ids),
        )

    assert await _bound("acme", reads) == ({"acme"}, {"acme"}, set(), set())
    assert await _bound("initech", reads) == ({"initech"}, {"initech"}, set(), set())
    assert await _bound(None, reads) == (set(), set(), set(), set())
    for table in TENANT_OWNED:
        for engine in (store.engine, store.reads):
            assert await _bound("acme", partial(_tenants_seen, engine, table)) <= {"acme"}


async def test_without_the_policies_the_same_reads_see_every_tenant(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the policies stop: the filter-less read of the test above, on a store without
    them (as on SQLite, where the application's filter is the only one)."""
    monkeypatch.setattr(store_module, "campaign_scope", lambda _scope: [])
    async with store.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE campaigns NO FORCE ROW LEVEL SECURITY"))

    async def tenants() -> set[str]:
        scope = RowScope(tenant="acme", campaigns=None)
        page = await store.campaign_page(scope, status=None, first=100, after=None)
        return {row.tenant_id for row in page.rows}

    assert await _bound("acme", tenants) == {"acme", "globex", "initech"}


async def test_a_write_bound_to_one_tenant_cannot_touch_another_tenants_rows(
    store: Store,
) -> None:
    async with store.engine.connect() as connection:
        globex_campaign = (
            await connection.execute(
                text("SELECT id FROM campaigns WHERE tenant_id = 'globex' LIMIT 1")
            )
        ).scalar() or ""
        influencer = (await connection.execute(text("SELECT id FROM influencers"))).scalar()
    assert globex_campaign.startswith("cmp")
    rows: list[SQLModel] = [
        CampaignRow(
            id="cmp_rls",
            tenant_id="globex",
            name="n",
            brand="b",
            status="ACTIVE",
            created_at=NOW,
            updated_at=NOW,
        ),
        CampaignMemberRow(
            id="mem_rls",
            campaign_id=globex_campaign,
            influencer_id=str(influencer),
            status="INVITED",
            created_at=NOW,
        ),
        AuditEventRow(at=NOW, tenant_id=None, coordinate="Query.x", decision="allow"),
    ]
    for row in rows:
        with pytest.raises(DBAPIError, match="row-level security"):
            await _bound("acme", partial(store.insert, row))

    async def rename_all() -> int:
        async with store.engine.begin() as connection:
            result = await connection.execute(text("UPDATE campaigns SET name = 'taken'"))
            return int(result.rowcount)

    acme = len(await _bound("acme", lambda: _ids(store.engine, "acme")))
    assert acme > 0
    assert await _bound("acme", rename_all) == acme
    async with store.engine.connect() as connection:
        names = await connection.execute(text("SELECT tenant_id, name = 'taken' FROM campaigns"))
        assert {(tenant, taken) for tenant, taken in names} == {
            ("acme", True),
            ("globex", False),
            ("initech", False),
        }


async def _ids(engine: AsyncEngine, tenant: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id FROM campaigns WHERE tenant_id = :t"), {"t": tenant}
        )
        return [row_id for (row_id,) in rows]


async def test_every_kind_of_connection_runs_its_statements_bound(store: Store) -> None:
    """The ORM session's autobegin, `engine.begin()`, a connection that begins as it goes,
    the autocommit reads and SQLAlchemy's sync code (`run_sync`, in its greenlet) alike."""
    query = "SELECT current_setting('hub.tenant', true), current_setting('hub.system', true)"

    def in_greenlet(connection: Any) -> Any:
        return tuple(connection.execute(text(query)).one())

    async def settings() -> list[tuple[str, str]]:
        seen: list[Any] = []
        async with store.sessions() as session:
            seen.append(tuple((await session.execute(text(query))).one()))
        async with store.engine.begin() as connection:
            seen.append(tuple((await connection.execute(text(query))).one()))
        async with store.engine.connect() as connection:
            seen.append(await connection.run_sync(in_greenlet))
            await connection.commit()
            seen.append(tuple((await connection.execute(text(query))).one()))
        async with store.reads.connect() as connection:
            seen.append(tuple((await connection.execute(text(query))).one()))
        return seen

    assert await _bound("acme", settings) == [("acme", "off")] * 5
    assert await _bound(None, settings) == [("", "off")] * 5
    assert await settings() == [("", "on")] * 5
    with as_system():
        assert await _bound("globex", settings) == [("globex", "off")] * 5
    # Transaction-local: what a transaction bound is gone once it ends.
    async with store.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        assert await driver.fetchval("SELECT current_setting('hub.tenant', true)") == ""


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
    store: Store,
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
    async with store.engine.begin() as connection:  # as the owner
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
    assert await _tenants_seen(store.engine, "audit_events") == {"globex"}
    data = payload["data"]
    contacts = [c for e in data["influencers"]["edges"] for c in e["node"]["contacts"]]
    assert sorted(e["node"]["id"] for e in data["campaigns"]["edges"]) == sorted(
        await _ids(store.engine, "globex")
    )
    assert contacts and all(contact["consents"] for contact in contacts)


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


async def test_serving_as_a_role_that_bypasses_row_security_is_warned_of(
    admin: AsyncEngine, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.store.tenancy"):
        assert await warn_if_unbound(store.engine) is False
        assert await warn_if_unbound(admin) is True
    [record] = [r for r in caplog.records if r.name == "hub.store.tenancy"]
    assert "superuser" in record.getMessage()


async def test_the_policies_go_and_come_back_with_the_migration(store: Store) -> None:
    async def forced() -> set[str]:
        async with store.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT relname FROM pg_class WHERE relforcerowsecurity "
                    "AND relnamespace = current_schema()::regnamespace"
                )
            )
            return {name for (name,) in rows}

    assert await forced() == TENANT_OWNED

    def downgrade(connection: Any) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")

    async with store.engine.begin() as connection:
        await connection.run_sync(downgrade)
    assert await forced() == set()
    assert await migrate.upgrade(store.engine) is True
    assert await forced() == TENANT_OWNED
