"""`hub tenants delete`: erase a tenant everywhere, in bounded batches, and finish the job when
run again after an interruption.

In order: the tenant is marked `deleted` first (its tokens are refused from then on, within
`HUB_TENANT_STATUS_TTL_S` on every replica, so no new write joins the data being erased);
every contact goes through the erasure `eraseContact` uses (anonymised in the store, a
tombstone kept so that no sync brings the person back, its audit trail pseudonymised, its
cached entries purged, its CRM record deleted through the retried erasure tasks); then the
tenant's idempotency entries, consents, campaign members, campaigns and CRM sync records are
deleted, a batch per transaction. Audit events and tombstones stay: they hold no personal
data. Each step finds its own remaining work in the store, so a second run does what the
first did not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlmodel import col

from hub.erasure import delete_upstream, erase_in_store
from hub.policy.rows import RowScope
from hub.sources.crm import CrmLookup
from hub.sources.store import Store
from hub.store.paging import keyset_pages
from hub.store.tables import (
    AuditEventRow,
    CampaignMemberRow,
    CampaignRow,
    ConsentRow,
    ContactRow,
    CrmOutboxRow,
    ErasureRow,
    ErasureTaskRow,
    IdempotencyRow,
    IdempotencySubjectRow,
    SyncConflictRow,
    SyncStateRow,
    TenantRow,
)
from hub.tenants import DELETED, TenantError

BATCH = 200
ERASED_BY = "cli"

Forget = Callable[[str], Awaitable[bool]]
"""Purge every cached entry of a subject; False when the shared cache could not be reached."""


@dataclass
class Holdings:
    """What a tenant still holds, as `hub tenants delete` would erase or delete it."""

    contacts: int
    erased_contacts: int
    campaigns: int
    members: int
    consents: int
    idempotency_keys: int

    def describe(self) -> str:
        return (
            f"{self.contacts} contacts to erase ({self.erased_contacts} erased already), "
            f"{self.campaigns} campaigns, {self.members} campaign members, "
            f"{self.consents} consents, {self.idempotency_keys} idempotency keys"
        )


@dataclass
class DeletionReport:
    """What one run did; `upstream` counts every tombstone of the tenant per source and
    status (this run's and earlier ones')."""

    erased: int = 0
    erased_before: int = 0
    campaigns: int = 0
    members: int = 0
    consents: int = 0
    idempotency_keys: int = 0
    sync_records: int = 0
    """CRM sync state, recorded conflicts and write-backs still queued."""
    cache_purged: bool = True
    upstream: dict[str, Counter[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        outcomes = {"ERASED": "done", "PENDING": "queued for retry", "FAILED": "queued for retry"}
        lines = [
            f"contacts erased: {self.erased} ({self.erased_before} erased before this run)",
            f"campaigns deleted: {self.campaigns}",
            f"campaign members deleted: {self.members}",
            f"consents deleted: {self.consents}",
            f"idempotency keys deleted: {self.idempotency_keys}",
            f"CRM sync records deleted: {self.sync_records}",
        ]
        for source, statuses in sorted(self.upstream.items()):
            said: Counter[str] = Counter()
            for status, count in statuses.items():
                said[outcomes.get(status, "not supported")] += count
            parts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(said.items()))
            lines.append(f"{source}: {parts}")
        if not self.cache_purged:
            lines.append("shared cache: unreachable, purges not done: run the command again")
        return lines

    @property
    def queued(self) -> int:
        return sum(
            count
            for statuses in self.upstream.values()
            for status, count in statuses.items()
            if status in ("PENDING", "FAILED")
        )


async def holdings(store: Store, tenant_id: str) -> Holdings:
    """`TenantError` for a tenant the store does not know."""
    await _existing(store, tenant_id)
    contacts = col(ContactRow.tenant_id) == tenant_id
    async with store.sessions() as session:

        async def count(query: Select[Any]) -> int:
            counted = await session.scalar(select(func.count()).select_from(query.subquery()))
            return int(counted or 0)

        return Holdings(
            contacts=await count(
                select(col(ContactRow.id)).where(contacts, col(ContactRow.erased_at).is_(None))
            ),
            erased_contacts=await count(
                select(col(ContactRow.id)).where(contacts, col(ContactRow.erased_at).is_not(None))
            ),
            campaigns=await count(_campaign_ids(tenant_id)),
            members=await count(_member_ids(tenant_id)),
            consents=await count(_consent_ids(tenant_id)),
            idempotency_keys=await count(_idempotency_keys(tenant_id)),
        )


async def delete_tenant(
    store: Store,
    tenant_id: str,
    *,
    crm: CrmLookup | None,
    forget: Forget,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    batch: int = BATCH,
) -> DeletionReport:
    """Erase and delete everything of the tenant (see the module); `TenantError` for a tenant
    the store does not know. Safe to run again, and to run after an interrupted run."""
    await _existing(store, tenant_id)
    async with store.sessions.begin() as session:
        await session.execute(
            update(TenantRow).where(col(TenantRow.id) == tenant_id).values(status=DELETED)
        )
        session.add(
            AuditEventRow(
                at=clock(),
                tenant_id=tenant_id,
                principal=ERASED_BY,
                coordinate="tenant.delete",
                decision="deleted",
            )
        )
    report = DeletionReport()
    await _erase_contacts(store, tenant_id, report, crm=crm, forget=forget, clock=clock, n=batch)
    if crm is not None:
        await _delete_upstream(store, tenant_id, crm, forget, clock, batch)
    report.idempotency_keys = await _delete_idempotency(store, tenant_id, batch)
    report.consents = await _delete_batches(store, ConsentRow, _consent_ids(tenant_id), batch)
    report.members = await _delete_batches(store, CampaignMemberRow, _member_ids(tenant_id), batch)
    report.campaigns = await _delete_batches(store, CampaignRow, _campaign_ids(tenant_id), batch)
    for table in (CrmOutboxRow, SyncConflictRow):
        ids = select(col(table.id)).where(col(table.tenant_id) == tenant_id)
        report.sync_records += await _delete_batches(store, table, ids, batch)
    async with store.sessions.begin() as session:
        states = await session.execute(
            delete(SyncStateRow).where(col(SyncStateRow.tenant_id) == tenant_id)
        )
        report.sync_records += int(getattr(states, "rowcount", 0) or 0)
    report.upstream = await _upstream_outcomes(store, tenant_id, batch)
    return report


async def _erase_contacts(
    store: Store,
    tenant_id: str,
    report: DeletionReport,
    *,
    crm: CrmLookup | None,
    forget: Forget,
    clock: Callable[[], datetime],
    n: int,
) -> None:
    """Every contact, erased ones included: their cached entries are purged again, in case
    an earlier run stopped between its erasure and its purge."""
    scope = RowScope(tenant_id)
    contacts = select(ContactRow).where(col(ContactRow.tenant_id) == tenant_id)
    async for page in keyset_pages(store, contacts, col(ContactRow.id), n):
        for contact in page:
            crm_id = None
            if contact.erased_at is None:
                tombstone, crm_id = await erase_in_store(
                    store,
                    scope,
                    contact.id,
                    now=clock(),
                    erased_by=ERASED_BY,
                    crm_configured=crm is not None,
                )
                report.erased += tombstone is not None
            else:
                report.erased_before += 1
            for subject in (contact.id, crm_id):
                if subject is not None and not await forget(subject):
                    report.cache_purged = False


async def _delete_upstream(
    store: Store,
    tenant_id: str,
    crm: CrmLookup,
    forget: Forget,
    clock: Callable[[], datetime],
    n: int,
) -> None:
    """One attempt at each of the tenant's CRM deletions, this run's and those left by earlier
    ones; what fails stays a task for the erasure retrier of the running hub."""
    tasks = select(ErasureTaskRow).where(
        col(ErasureTaskRow.tenant_id) == tenant_id, col(ErasureTaskRow.source) == "crm"
    )
    async for page in keyset_pages(store, tasks, col(ErasureTaskRow.id), n):
        for task in page:
            await forget(task.upstream_id)
            await delete_upstream(store, crm, task, now=clock())


async def _delete_idempotency(store: Store, tenant_id: str, n: int) -> int:
    """The kept answers that name the tenant's contacts (erasure replaced them already)."""
    deleted = 0
    while True:
        async with store.sessions.begin() as session:
            keys = list((await session.scalars(_idempotency_keys(tenant_id).limit(n))).all())
            if keys:
                await session.execute(
                    delete(IdempotencySubjectRow).where(col(IdempotencySubjectRow.key).in_(keys))
                )
                await session.execute(
                    delete(IdempotencyRow).where(col(IdempotencyRow.key).in_(keys))
                )
        deleted += len(keys)
        if len(keys) < n:
            return deleted


async def _delete_batches(store: Store, table: Any, ids: Select[Any], n: int) -> int:
    deleted = 0
    while True:
        async with store.sessions.begin() as session:
            batch = list((await session.scalars(ids.limit(n))).all())
            if batch:
                await session.execute(delete(table).where(col(table.id).in_(batch)))
        deleted += len(batch)
        if len(batch) < n:
            return deleted


async def _upstream_outcomes(store: Store, tenant_id: str, n: int) -> dict[str, Counter[str]]:
    outcomes: dict[str, Counter[str]] = {}
    tombstones = select(ErasureRow).where(col(ErasureRow.tenant_id) == tenant_id)
    async for page in keyset_pages(store, tombstones, col(ErasureRow.contact_id), n):
        for tombstone in page:
            for entry in tombstone.sources:
                outcomes.setdefault(entry["source"], Counter())[entry["status"]] += 1
    return outcomes


async def _existing(store: Store, tenant_id: str) -> None:
    async with store.sessions() as session:
        if await session.get(TenantRow, tenant_id) is None:
            raise TenantError(f"no tenant {tenant_id}")


def _campaign_ids(tenant_id: str) -> Select[Any]:
    return select(col(CampaignRow.id)).where(col(CampaignRow.tenant_id) == tenant_id)


def _member_ids(tenant_id: str) -> Select[Any]:
    return select(col(CampaignMemberRow.id)).where(
        col(CampaignMemberRow.campaign_id).in_(_campaign_ids(tenant_id))
    )


def _consent_ids(tenant_id: str) -> Select[Any]:
    return select(col(ConsentRow.id)).where(col(ConsentRow.tenant_id) == tenant_id)


def _idempotency_keys(tenant_id: str) -> Select[Any]:
    contacts = select(col(ContactRow.id)).where(col(ContactRow.tenant_id) == tenant_id)
    return (
        select(col(IdempotencySubjectRow.key))
        .where(col(IdempotencySubjectRow.subject).in_(contacts))
        .distinct()
    )
