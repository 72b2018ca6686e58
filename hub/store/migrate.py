"""Alembic migrations applied through the hub's own async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def status(engine: AsyncEngine) -> str:
    """`new` (no revision yet), `current` or `behind` the newest migration."""
    async with engine.connect() as connection:
        return await connection.run_sync(_status)


def _status(connection: Connection) -> str:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return "new"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return "current" if current == head else "behind"


async def upgrade(engine: AsyncEngine) -> bool:
    """Bring the store to the newest revision; True when anything was applied."""
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> bool:
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    if MigrationContext.configure(connection).get_current_revision() == head:
        return False
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return True
