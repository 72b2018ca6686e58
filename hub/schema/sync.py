"""`SyncStatus`: where the caller's tenant's sync with the CRM stands."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from hub import crm_sync
from hub.sources.store import Store
from hub.store.tables import SyncStateRow


@strawberry.type(description="Where the tenant's contacts stand with the CRM (`hub sync crm`).")
class SyncStatus:
    source: str
    last_run_at: datetime | None = strawberry.field(
        description="When the last run (of the command or the schedule) started."
    )
    last_success_at: datetime | None = strawberry.field(
        description="When the last complete run started: every change made at the CRM "
        "before then is in the hub."
    )
    lag_seconds: int | None = strawberry.field(
        description="Seconds since `lastSuccessAt`; the CRM's webhooks bring changes sooner."
    )
    last_error: str | None = strawberry.field(description="Why the last run failed, if it did.")
    imported: int = strawberry.field(description="Contacts created from the CRM's records.")
    updated: int = strawberry.field(description="Contacts a sync changed on either side.")
    conflicts: int = strawberry.field(
        description="Fields both sides changed since they last agreed, settled by sync.yaml."
    )
    failures: int = strawberry.field(description="Records that could not be applied, and runs.")
    skipped_erased: int = strawberry.field(
        description="Records of people erased here, which are never imported again."
    )
    pending_write_backs: int = strawberry.field(
        description="Changes in the hub still waiting to be written to the CRM."
    )
    oldest_pending_write_back_at: datetime | None


async def sync_status(store: Store, tenant: str) -> SyncStatus:
    state = await crm_sync.sync_state(store, tenant) or SyncStateRow(
        tenant_id=tenant, source=crm_sync.SOURCE
    )
    pending, oldest = await crm_sync.pending_write_backs(store, tenant)
    success = None if state.last_success_at is None else state.last_success_at
    return SyncStatus(
        source=crm_sync.SOURCE,
        last_run_at=None if state.last_run_at is None else state.last_run_at,
        last_success_at=success,
        lag_seconds=None if success is None else int((datetime.now(UTC) - success).total_seconds()),
        last_error=state.last_error,
        imported=state.imported,
        updated=state.updated,
        conflicts=state.conflicts,
        failures=state.failures,
        skipped_erased=state.skipped_erased,
        pending_write_backs=pending,
        oldest_pending_write_back_at=oldest,
    )
