"""`hub tenants export`: every row a tenant owns as NDJSON, a page at a time.

One line per record, `{"type": KIND, …columns}`, kinds in the order of `KINDS` and each kind
in id order, so that two exports of unchanged data are the same file. Rows are read a page
(`PAGE_SIZE`) at a time by id, each page in a short transaction of its own, and handed to
`write` as one chunk: memory holds one page, whatever the tenant's size. Rows are written as
they are stored: an erased contact is its anonymised row, money is minor units beside its
currency, times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Mapped
from sqlmodel import SQLModel, col

from hub.sources.store import Store
from hub.store.paging import keyset_pages
from hub.store.tables import (
    AuditEventRow,
    CampaignMemberRow,
    CampaignRow,
    ConsentRow,
    ContactRow,
    ErasureRow,
    TenantRow,
)
from hub.tenants import TenantError

PAGE_SIZE = 500
KINDS = ("tenant", "campaign", "member", "contact", "consent", "erasure", "audit_event")

Write = Callable[[str], object]
"""Takes one chunk of NDJSON lines (a page's, each ending in a newline)."""


async def export_tenant(
    store: Store, tenant_id: str, write: Write, *, page_size: int = PAGE_SIZE
) -> dict[str, int]:
    """Write the tenant's rows through `write`, a page per call; the number of each kind.
    `TenantError` for a tenant the store does not know (nothing written then)."""
    async with store.sessions() as session:
        tenant = await session.get(TenantRow, tenant_id)
    if tenant is None:
        raise TenantError(f"no tenant {tenant_id}")
    write(line("tenant", tenant))
    counts = {"tenant": 1}
    for kind, query, key in _queries(tenant_id):
        counts[kind] = 0
        async for page in keyset_pages(store, query, key, page_size):
            write("".join(line(kind, row) for row in page))
            counts[kind] += len(page)
    return counts


def line(kind: str, row: SQLModel) -> str:
    """One record: its kind, then every stored column, as JSON on one line."""
    values: dict[str, Any] = {"type": kind}
    for column in type(row).__table__.columns:  # type: ignore[attr-defined]
        values[column.name] = _json_value(getattr(row, column.name))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n"


def _queries(
    tenant_id: str,
) -> list[tuple[str, Select[Any], Mapped[Any]]]:
    members = (
        select(CampaignMemberRow)
        .join(CampaignRow, col(CampaignRow.id) == col(CampaignMemberRow.campaign_id))
        .where(col(CampaignRow.tenant_id) == tenant_id)
    )
    return [
        (
            "campaign",
            select(CampaignRow).where(col(CampaignRow.tenant_id) == tenant_id),
            col(CampaignRow.id),
        ),
        ("member", members, col(CampaignMemberRow.id)),
        (
            "contact",
            select(ContactRow).where(col(ContactRow.tenant_id) == tenant_id),
            col(ContactRow.id),
        ),
        (
            "consent",
            select(ConsentRow).where(col(ConsentRow.tenant_id) == tenant_id),
            col(ConsentRow.id),
        ),
        (
            "erasure",
            select(ErasureRow).where(col(ErasureRow.tenant_id) == tenant_id),
            col(ErasureRow.contact_id),
        ),
        (
            "audit_event",
            select(AuditEventRow).where(col(AuditEventRow.tenant_id) == tenant_id),
            col(AuditEventRow.id),
        ),
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # Stored in UTC; a backend that keeps no zone gives it back naive.
        at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return at.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value
