"""Migrations: a store made by an older revision reaches the tables the code declares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from hub.settings import Settings
from hub.store import migrate
from hub.store.engine import create_engine

NOW = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = migrate.alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _contacts(engine: AsyncEngine, rows: list[tuple[str, str, str | None]]) -> None:
    async with engine.begin() as connection:
        for tenant in sorted({tenant for _id, tenant, _crm in rows}):
            await connection.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (:id, :id, :at)"),
                {"id": tenant, "at": NOW},
            )
        for contact_id, tenant, crm_id in rows:
            await connection.execute(
                text(
                    "INSERT INTO contacts (id, tenant_id, crm_id, created_at, updated_at) "
                    "VALUES (:id, :tenant, :crm, :at, :at)"
                ),
                {"id": contact_id, "tenant": tenant, "crm": crm_id, "at": NOW},
            )


async def _crm_ids(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT id, crm_id FROM contacts"))).all()
    return {contact_id: crm_id for contact_id, crm_id in rows}


async def test_crm_ids_shared_within_a_tenant_are_unlinked_and_then_kept_unique(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_to, "0002")
    await _contacts(
        engine,
        [
            ("con_g", "acme", "crm-acme-00001"),
            ("con_w", "acme", "crm-acme-00001"),
            ("con_x", "acme", "crm-acme-00001"),
            ("con_own", "acme", "crm-acme-00002"),
            ("con_none", "acme", None),
            ("con_none2", "acme", None),
            ("con_other", "globex", "crm-acme-00001"),
        ],
    )
    assert await migrate.upgrade(engine) is True
    assert await _crm_ids(engine) == {
        "con_g": None,
        "con_w": None,
        "con_x": None,
        "con_own": "crm-acme-00002",
        "con_none": None,
        "con_none2": None,
        "con_other": "crm-acme-00001",
    }
    with pytest.raises(IntegrityError):
        await _contacts(engine, [("con_dup", "acme2", "crm-x"), ("con_dup2", "acme2", "crm-x")])
    await _contacts(engine, [("con_again", "acme3", "crm-acme-00001")])


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), SQLModel.metadata))


async def test_the_migrated_contacts_table_is_the_declared_one(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert [d for d in differences if "contacts" in repr(d)] == []


async def test_a_store_is_behind_or_ahead_of_this_code_by_its_revision(
    engine: AsyncEngine,
) -> None:
    await migrate.upgrade(engine)
    assert await migrate.status(engine) == "current"
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    assert await migrate.status(engine) == "behind"
    async with engine.begin() as connection:
        # A revision this code does not know: a newer release migrated the store.
        await connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    assert await migrate.status(engine) == "ahead"
