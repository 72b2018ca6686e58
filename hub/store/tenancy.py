"""Which tenant's rows the store's statements may touch: row-level security on PostgreSQL.

Every tenant-owned table has a policy (migration 0008) that shows a row only when its tenant
is the one named by the setting `hub.tenant`, or when `hub.system` is `on`. The request's
tenant is bound once, where a token becomes a caller (`Authenticator.authenticate_until`),
in a context variable that the request's tasks inherit; work outside a request (jobs, the
command line, migrations, the demo's data, webhooks) is bound to nothing and so runs in
system mode. Each connection of the store sends the binding before its statements run
(`bind_connections`). On SQLite the application's own filters (`hub.sources.scoping`) are
the only ones.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

logger = logging.getLogger(__name__)

BIND_SQL = "SELECT set_config('hub.tenant', $1, $3), set_config('hub.system', $2, $3)"
"""Both settings in one statement: one round trip. `$3`: transaction-local or not."""


@dataclass(frozen=True, slots=True)
class Binding:
    """The rows a context's statements may touch: `tenant`'s (none when None), or, in
    system mode, every tenant's."""

    tenant: str | None
    system: bool

    @property
    def settings(self) -> tuple[str, str]:
        """The values of `hub.tenant` and `hub.system` (an empty tenant names none)."""
        return self.tenant or "", "on" if self.system else "off"


SYSTEM = Binding(None, system=True)

_binding: ContextVar[Binding] = ContextVar("hub_tenant_binding", default=SYSTEM)


def bind_tenant(tenant: str | None) -> None:
    """Bind the rest of the current context (a request's task and every task it starts
    from now on) to `tenant`'s rows; None (an anonymous caller) to no tenant's rows."""
    _binding.set(Binding(tenant, system=False))


def current_binding() -> Binding:
    return _binding.get()


@contextlib.contextmanager
def as_system() -> Iterator[None]:
    """Run the block in system mode, whoever the context's caller is: work a request sets
    off for everyone (writing the audit buffer, which holds every tenant's events)."""
    token = _binding.set(SYSTEM)
    try:
        yield
    finally:
        _binding.reset(token)


def bind_connections(engine: Engine, *, per_checkout: bool) -> None:
    """Send the binding of the current context on `engine`'s connections (PostgreSQL).

    Transactional engines: at the start of every transaction (the `begin` event, which the
    ORM session's autobegin and `engine.begin()` alike go through), transaction-local, as
    `SET LOCAL` is: it ends with the transaction, so a pooled connection keeps nothing.

    Autocommit engines (`per_checkout`) run no transaction to bind: the setting is made for
    the session at every checkout instead. A checked-out connection serves one context until
    it is handed back, so every statement it runs meanwhile is bound as the transaction's
    would be; the next checkout binds again before its first statement. The values last
    sent are remembered per connection, and sent again only when they differ."""
    if per_checkout:
        event.listen(engine, "checkout", _bind_checkout)
    else:
        event.listen(engine, "begin", _bind_transaction)


def _bind_transaction(connection: Connection) -> None:
    dbapi_connection = connection.connection.dbapi_connection
    local = not getattr(dbapi_connection, "autocommit", False)
    _send(dbapi_connection, current_binding().settings, local=local)


def _bind_checkout(
    dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    settings = current_binding().settings
    if record.info.get("hub.bound") == (dbapi_connection, settings):
        return
    record.info.pop("hub.bound", None)
    _send(dbapi_connection, settings, local=False)
    record.info["hub.bound"] = (dbapi_connection, settings)


def _send(dbapi_connection: Any, settings: tuple[str, str], *, local: bool) -> None:
    # The driver's own cursor: the statement is no statement of SQLAlchemy's (none that its
    # events trace or count), and inside `begin` SQLAlchemy's connection has no transaction
    # yet to run one in. asyncpg's adapter opens the transaction before it.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(BIND_SQL, (*settings, local))
    finally:
        cursor.close()


async def warn_if_unbound(engine: AsyncEngine) -> bool:
    """Log a warning when the store's role is a superuser or has BYPASSRLS (PostgreSQL):
    row-level security binds neither. True when it warned."""
    if engine.dialect.name != "postgresql":
        return False
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            )
        ).one()
    if not (row.rolsuper or row.rolbypassrls):
        return False
    logger.warning(
        "row-level security does not bind the store's role %s (%s): serve as a role with "
        "NOSUPERUSER NOBYPASSRLS so that each request sees its own tenant's rows only",
        row.rolname,
        "superuser" if row.rolsuper else "BYPASSRLS",
    )
    return True
