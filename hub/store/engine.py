"""The async engine, chosen by URL: SQLite (WAL) by default, PostgreSQL through asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from hub.observability.tracing import trace_statements
from hub.settings import Settings
from hub.store.tenancy import bind_connections


def create_engine(settings: Settings, *, reads: bool = False) -> AsyncEngine:
    """Open the engine for `settings.database_url` (creating a SQLite file's folder).

    `reads`: an engine for single statements that read, outside any transaction: on SQLite
    its connections are not rolled back when handed back (a read opens no transaction, and
    each rollback is one more trip to the connection's thread), on PostgreSQL it runs in
    autocommit (no BEGIN and ROLLBACK around each read).

    On PostgreSQL every connection is bound to the current context's tenant before its
    statements run (`hub.store.tenancy`): row-level security does the rest."""
    url = make_url(settings.database_url)
    if settings.is_sqlite:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"pool_reset_on_return": None} if reads else {}
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        trace_statements(engine.sync_engine)
        return engine
    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        connect_args["server_settings"] = {"search_path": settings.database_schema}
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if reads else {}),
    )
    bind_connections(engine.sync_engine, per_checkout=reads)
    trace_statements(engine.sync_engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
