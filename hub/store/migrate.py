"""Alembic migrations applied through the hub's own async engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

MIGRATION_LOCK = 0x6875625F6D6967
"""The PostgreSQL advisory lock that migrations run under ("hub_mig"): replicas starting
together on one store take turns, and all but the first find it current."""
PREPARE_LOCK = 0x6875625F707265
"""The one a process holds while it prepares the store at start ("hub_pre"): migrations
and the demo's data, so that replicas starting together load the data once."""


@contextlib.asynccontextmanager
async def preparing(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold `PREPARE_LOCK` (PostgreSQL; nothing on SQLite, whose writers take turns anyway)
    on a connection of its own until the block ends."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PREPARE_LOCK})
        await connection.commit()
        try:
            yield
        finally:
            await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PREPARE_LOCK})
            await connection.commit()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def status(engine: AsyncEngine) -> str:
    """`new` (no revision yet), `current`, `behind` the newest migration, or `ahead` of it
    (migrated by a newer release: this one still serves while the release rolls out)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_status)


def _status(connection: Connection) -> str:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return "new"
    scripts = ScriptDirectory.from_config(alembic_config())
    if current == scripts.get_current_head():
        return "current"
    known = {script.revision for script in scripts.walk_revisions()}
    # A revision this code does not know was applied by a newer release, during its roll.
    return "behind" if current in known else "ahead"


async def upgrade(engine: AsyncEngine) -> bool:
    """Bring the store to the newest revision; True when anything was applied.

    On PostgreSQL under `MIGRATION_LOCK`, held until the transaction ends: the revision is
    read after the lock is taken, so a replica that waited applies nothing twice."""
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> bool:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    if MigrationContext.configure(connection).get_current_revision() == head:
        return False
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return True
