"""Row-level security on PostgreSQL: a statement without its tenant filter sees one tenant
(as a role the policies bind: see `conftest.py`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col

import hub.sources.store as store_module
from hub.policy.rows import RowScope
from hub.sources.store import Store
from hub.store import migrate
from hub.store.tables import AuditEventRow, CampaignMemberRow, CampaignRow
from hub.store.tenancy import as_system, warn_if_unbound
from tests.store.conftest import TENANT_OWNED, bound, campaign_ids, tenants_seen

NOW = datetime(2026, 11, 1, tzinfo=UTC)


async def test_every_table_with_tenant_rows_has_forced_row_security(role_store: Store) -> None:
    async with role_store.engine.connect() as connection:
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


SEEDED = {"campaigns", "campaign_members", "contacts", "consents"}
"""The tenant-owned tables the seed fills for every tenant."""


async def test_reads_without_the_tenant_filter_see_only_the_bound_tenants_rows(
    role_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("campaign_scope", "contact_scope"):
        monkeypatch.setattr(store_module, name, lambda _scope: [])
    monkeypatch.setattr(
        store_module,
        "scoped_campaign_ids",
        lambda _scope, _ids: select(col(CampaignRow.id)),
    )
    # Every tenant's rows are in the store: unbound (system mode) reads see all three.
    for table in SEEDED:
        assert await tenants_seen(role_store.engine, table) == {"acme", "globex", "initech"}

    async def reads() -> tuple[set[str], set[str], set[str], set[str]]:
        # The wrong tenant: only the consents' own filter uses it, and finds none of the
        # bound tenant's consents (the application's filter and the policy both hold).
        scope = RowScope(tenant="globex", campaigns=None)
        campaigns = (await role_store.campaign_page(scope, status=None, first=100, after=None)).rows
        ids = [row.id for row in campaigns]
        members = await role_store.member_pages(scope, ids, first=100, after=None)
        influencers = [m.influencer_id for page in members.values() for m in page.rows]
        contacts = await role_store.contacts_by_influencer(scope, influencers)
        contact_ids = [c.id for rows in contacts.values() for c in rows]
        consents = await role_store.consents_by_contact(scope, contact_ids)
        return (
            {row.tenant_id for row in campaigns},
            {c.tenant_id for rows in contacts.values() for c in rows},
            {c.tenant_id for rows in consents.values() for c in rows},
            set(members) - set(ids),
        )

    assert await bound("acme", reads) == ({"acme"}, {"acme"}, set(), set())
    assert await bound("initech", reads) == ({"initech"}, {"initech"}, set(), set())
    assert await bound(None, reads) == (set(), set(), set(), set())
    for table in TENANT_OWNED:
        for engine in (role_store.engine, role_store.reads):
            assert await bound("acme", partial(tenants_seen, engine, table)) <= {"acme"}


async def test_without_the_policies_the_same_reads_see_every_tenant(
    role_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the policies stop: the filter-less read of the test above, on a store without
    them (as on SQLite, where the application's filter is the only one)."""
    monkeypatch.setattr(store_module, "campaign_scope", lambda _scope: [])
    async with role_store.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE campaigns NO FORCE ROW LEVEL SECURITY"))

    async def tenants() -> set[str]:
        scope = RowScope(tenant="acme", campaigns=None)
        page = await role_store.campaign_page(scope, status=None, first=100, after=None)
        return {row.tenant_id for row in page.rows}

    assert await bound("acme", tenants) == {"acme", "globex", "initech"}


async def test_a_write_bound_to_one_tenant_cannot_touch_another_tenants_rows(
    role_store: Store,
) -> None:
    async with role_store.engine.connect() as connection:
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
            await bound("acme", partial(role_store.insert, row))

    async def rename_all() -> int:
        async with role_store.engine.begin() as connection:
            result = await connection.execute(text("UPDATE campaigns SET name = 'taken'"))
            return int(result.rowcount)

    acme = len(await bound("acme", lambda: campaign_ids(role_store.engine, "acme")))
    assert acme > 0
    assert await bound("acme", rename_all) == acme
    async with role_store.engine.connect() as connection:
        names = await connection.execute(text("SELECT tenant_id, name = 'taken' FROM campaigns"))
        assert {(tenant, taken) for tenant, taken in names} == {
            ("acme", True),
            ("globex", False),
            ("initech", False),
        }


async def test_every_kind_of_connection_runs_its_statementsbound(role_store: Store) -> None:
    """The ORM session's autobegin, `engine.begin()`, a connection that begins as it goes,
    the autocommit reads and SQLAlchemy's sync code (`run_sync`, in its greenlet) alike."""
    query = "SELECT current_setting('hub.tenant', true), current_setting('hub.system', true)"

    def in_greenlet(connection: Any) -> Any:
        return tuple(connection.execute(text(query)).one())

    async def settings() -> list[tuple[str, str]]:
        seen: list[Any] = []
        async with role_store.sessions() as session:
            seen.append(tuple((await session.execute(text(query))).one()))
        async with role_store.engine.begin() as connection:
            seen.append(tuple((await connection.execute(text(query))).one()))
        async with role_store.engine.connect() as connection:
            seen.append(await connection.run_sync(in_greenlet))
            await connection.commit()
            seen.append(tuple((await connection.execute(text(query))).one()))
        async with role_store.reads.connect() as connection:
            seen.append(tuple((await connection.execute(text(query))).one()))
        # The store's reads: on the reading engine (the driver's own calls), and on a store
        # with no reading engine, as the command line makes it (SQLAlchemy's execution).
        for store in (role_store, Store(role_store.engine)):
            seen.append(tuple((await store.rows(as_select))[0]))
        return seen

    as_select = select(
        func.current_setting("hub.tenant", True), func.current_setting("hub.system", True)
    )
    assert await bound("acme", settings) == [("acme", "off")] * 7
    assert await bound(None, settings) == [("", "off")] * 7
    assert await settings() == [("", "on")] * 7
    with as_system():
        assert await bound("globex", settings) == [("globex", "off")] * 7
    # Transaction-local: what a transaction bound is gone once it ends.
    async with role_store.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        assert await driver.fetchval("SELECT current_setting('hub.tenant', true)") == ""


async def test_serving_as_a_role_that_bypasses_row_security_is_warned_of(
    admin: AsyncEngine, role_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.store.tenancy"):
        assert await warn_if_unbound(role_store.engine) is False
        assert await warn_if_unbound(admin) is True
    [record] = [r for r in caplog.records if r.name == "hub.store.tenancy"]
    assert "superuser" in record.getMessage()


async def test_the_policies_go_and_come_back_with_the_migration(role_store: Store) -> None:
    async def forced() -> set[str]:
        async with role_store.engine.connect() as connection:
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

    async with role_store.engine.begin() as connection:
        await connection.run_sync(downgrade)
    assert await forced() == set()
    assert await migrate.upgrade(role_store.engine) is True
    assert await forced() == TENANT_OWNED
