"""Fixtures of the store's tests on PostgreSQL as a role that row-level security binds.

The test server's `postgres` is a superuser, whom row-level security never binds: these tests
connect as a role of their own (NOSUPERUSER NOBYPASSRLS) that migrates its store, and so owns
the tables, as `hub migrate` would run as the owner.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hub.settings import Settings
from hub.sources.store import Store
from hub.store import migrate, seed
from hub.store.engine import create_engine
from hub.store.tenancy import bind_tenant
from tests.conftest import ROOT, TEST_SECRET

ROLE = "hub_rls_test"
TENANT_OWNED = {
    "campaigns",
    "campaign_members",
    "contacts",
    "consents",
    "erasures",
    "erasure_tasks",
    "crm_outbox",
    "sync_states",
    "sync_conflicts",
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
async def role_store(role_settings: Settings) -> AsyncIterator[Store]:
    """The role's store, migrated and seeded (in system mode: nothing is bound here)."""
    engine = create_engine(role_settings)
    reads = create_engine(role_settings, reads=True)
    await migrate.upgrade(engine)
    await seed.seed(engine, seed.SeedPlan(influencers=30, campaigns=6, contacts_per_tenant=6))
    yield Store(engine, reads=reads)
    await engine.dispose()
    await reads.dispose()


async def bound(tenant: str | None, work: Callable[[], Awaitable[T]]) -> T:
    """`work` in a task bound to `tenant`, as a request's would be (the caller's stays as is)."""
    context = contextvars.copy_context()
    context.run(bind_tenant, tenant)

    async def run() -> T:
        return await work()

    return await asyncio.create_task(run(), context=context)


async def tenants_seen(engine: AsyncEngine, table: str) -> set[str | None]:
    column = "c.tenant_id" if table == "campaign_members" else "t.tenant_id"
    join = " JOIN campaigns c ON c.id = t.campaign_id" if table == "campaign_members" else ""
    async with engine.connect() as connection:
        rows = await connection.execute(text(f"SELECT DISTINCT {column} FROM {table} t{join}"))
        return {tenant for (tenant,) in rows}


async def campaign_ids(engine: AsyncEngine, tenant: str) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id FROM campaigns WHERE tenant_id = :t"), {"t": tenant}
        )
        return [row_id for (row_id,) in rows]
