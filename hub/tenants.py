"""Tenants as the operator manages them: created, listed, suspended and resumed; a suspended
or deleted tenant's tokens are refused on every path.

The check sits in the authenticator (`Authenticator.tenants`), the one place every path
(`/graphql`, exports, subscriptions) turns a token into a caller, so that no path can skip
it. A tenant's status is read from the store and kept `ttl_s` per process: a suspension
holds on every replica within that time.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from hub.errors import TenantClosed, TenantSuspended
from hub.sources.store import Store
from hub.store.tables import TenantRow

ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_KEPT = 10_000


class TenantError(Exception):
    """A tenant command cannot do what was asked; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    status: str
    created_at: datetime


class TenantGate:
    """Whether a tenant's tokens may be served, read from the store and kept `ttl_s`."""

    def __init__(
        self, store: Store, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._kept: OrderedDict[str, tuple[str | None, float]] = OrderedDict()

    async def check(self, tenant: str | None) -> None:
        """`TenantSuspended` when `tenant` is, `TenantClosed` when it was deleted; a tenant the
        store does not know is neither."""
        if tenant is None:
            return
        status = await self.status(tenant)
        if status == SUSPENDED:
            raise TenantSuspended()
        if status == DELETED:
            raise TenantClosed()

    async def status(self, tenant: str) -> str | None:
        now = self.clock()
        kept = self._kept.get(tenant)
        if kept is not None and now - kept[1] < self.ttl_s:
            self._kept.move_to_end(tenant)
            return kept[0]
        async with self.store.sessions() as session:
            status = (
                await session.execute(
                    select(col(TenantRow.status)).where(col(TenantRow.id) == tenant)
                )
            ).scalar_one_or_none()
        if self.ttl_s > 0:
            self._kept[tenant] = (status, now)
            self._kept.move_to_end(tenant)
            while len(self._kept) > MAX_KEPT:
                self._kept.popitem(last=False)
        return status


async def create(store: Store, tenant_id: str, name: str) -> Tenant:
    if not TENANT_ID.fullmatch(tenant_id):
        raise TenantError("a tenant id is 1-63 lower-case letters, digits and '-'")
    if not name.strip() or len(name) > 200:
        raise TenantError("a tenant's name is 1-200 characters")
    row = TenantRow(id=tenant_id, name=name.strip(), created_at=datetime.now(UTC), status=ACTIVE)
    try:
        async with store.sessions.begin() as session:
            session.add(row)
    except IntegrityError:
        raise TenantError(f"tenant {tenant_id} exists already") from None
    return _tenant(row)


async def listed(store: Store) -> list[Tenant]:
    async with store.sessions() as session:
        rows = (await session.scalars(select(TenantRow).order_by(col(TenantRow.id)))).all()
    return [_tenant(row) for row in rows]


async def set_status(store: Store, tenant_id: str, status: str) -> None:
    """Suspend or resume a tenant; a deleted one stays deleted (`hub tenants delete` is the
    only way there, and there is none back)."""
    async with store.sessions.begin() as session:
        changed = await session.execute(
            update(TenantRow)
            .where(col(TenantRow.id) == tenant_id, col(TenantRow.status) != DELETED)
            .values(status=status)
        )
    if not getattr(changed, "rowcount", 0):
        if await find(store, tenant_id) is not None:
            raise TenantError(f"tenant {tenant_id} is deleted: it cannot be suspended or resumed")
        raise TenantError(f"no tenant {tenant_id}")


async def find(store: Store, tenant_id: str) -> Tenant | None:
    async with store.sessions() as session:
        row = await session.get(TenantRow, tenant_id)
    return None if row is None else _tenant(row)


def _tenant(row: TenantRow) -> Tenant:
    return Tenant(row.id, row.name, row.status, row.created_at)
