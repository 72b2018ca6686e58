"""CRM sync: the CRM's contacts imported into the hub and kept alike with it, field by field,
by `policies/sync.yaml`.

    `hub sync crm [--full]`, or its schedule (one process per tenant at a time: a lease)
      -> GET /v1/contacts?tenant=…&updated_since=<watermark - 5 s, or 1970 for --full>,
         oldest change first, page by page; the CRM's cursor kept after each page
         (`job_checkpoints`): a run stopped midway goes on
      -> each page in one transaction (`apply_records`):
           the contacts it may match and their queued write-backs read (and locked), then
           the tombstones: an erased person's record (CRM id or email) is skipped
           a contact with the CRM id, else one not linked to another record with the same
           normalised email, else with the same E.164 phone (and not another person's: the
           emails do not differ, or the names agree)          -> each field decided by its
           rule (`hub.policy.sync.decide`, `newest` by each field's own change time):
               the hub's value to change -> the contact updated; audited (`updated`)
               the CRM's value to change -> a write-back queued (`crm_outbox`)
               both changed since agreed -> a conflict recorded (`sync_conflicts`)
           none                                                 -> a new contact;
                                                                   audited (`imported`)
      -> the watermark: the newest `updated` the run saw, no later than the run's start and
         before any record that failed for a reason that may pass; `sync_states` counts
    POST /webhooks/crm (`contact.updated`) -> that record read fresh and applied the same way
    upsertContact on a linked contact     -> its write-back queued in the write's transaction
    the outbox job -> each contact's oldest write-back, PATCH /v1/contacts/{id} with the row's
                      own `Idempotency-Key` (the CRM applies a key once) once the CRM says the
                      record is the tenant's; retried with backoff, given up after 20 failures;
                      then the row is deleted (it holds personal values) and what it wrote
                      is what both sides agree on
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from hub.erasure import tombstoned_in
from hub.errors import SourceError
from hub.ids import new_id
from hub.jobs import PeriodicJob
from hub.phones import e164
from hub.policy.sync import FIELDS, SyncPolicy, decide
from hub.sources.crm import CrmContact, CrmSource
from hub.sources.store import Store
from hub.store import checkpoints
from hub.store.leases import Leases
from hub.store.tables import (
    SYNCED_COLUMNS,
    AuditEventRow,
    ContactRow,
    CrmOutboxRow,
    SyncConflictRow,
    SyncStateRow,
)
from hub.tenants import ACTIVE, find, listed

logger = logging.getLogger("hub.crm_sync")

SOURCE = "crm"
PRINCIPAL = "sync:crm"
"""Who the audit trail names for what a sync writes."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""What a full run lists from: every record, in the order of its last change."""
OVERLAP = timedelta(seconds=5)
"""An incremental run lists from this long before the watermark: a change the CRM stamped
while the last run read is not missed (applying a record twice changes nothing)."""
LEASE_S = 300.0
OUTBOX_BACKOFF_S = (5, 30, 120, 600, 1800)
OUTBOX_CLAIM_S = 60.0
MAX_SENDING = 8
"""Write-backs in flight at once (each contact's one at a time, in order)."""
MAX_OUTBOX_ATTEMPTS = 20
"""After this many failures (about eight hours of retries) a write-back is given up."""
"""Write-backs in flight at once (each contact's one at a time, in order)."""
LIMITS = {"fullName": 200, "email": 320, "phone": 40, "company": 200, "jobTitle": 200}
"""The longest value the store keeps of each field; a longer one fails its record."""
Clock = Callable[[], datetime]
OnContact = Callable[[str, str], Awaitable[None]]
"""Told (contact id, CRM id) of each contact a sync changed: caches to drop."""


class SyncBusy(Exception):
    """Another process syncs this tenant."""


@dataclass
class Tally:
    """What a run (or a webhook) did."""

    seen: int = 0
    imported: int = 0
    updated: int = 0
    conflicts: int = 0
    failures: int = 0
    skipped_erased: int = 0


@dataclass(frozen=True, slots=True)
class SyncReport:
    tally: Tally
    resumed: bool
    full: bool


def _normalised(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def _set(row: ContactRow, name: str, value: str | None, *, at: datetime) -> None:
    """A synchronised field set to what the CRM holds, changed there at `at`."""
    setattr(row, SYNCED_COLUMNS[name], value)
    row.field_changed_at = {**(row.field_changed_at or {}), name: at.isoformat()}
    if name == "email":
        row.email_normalized = _normalised(value)
    elif name == "phone":
        row.phone_e164 = e164(value)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one record did: `imported`, `updated`, `unchanged`, `skipped_erased` or
    `failed`."""

    kind: str
    conflicts: int = 0
    changed: str | None = None
    """The contact whose values in the hub changed, if one did."""
    retry: bool = False
    """Failed for a reason that may pass (the store): the next run reads it again."""


async def apply_records(
    store: Store,
    policy: SyncPolicy,
    tenant: str,
    records: list[CrmContact],
    tally: Tally,
    *,
    now: datetime,
    on_contact: OnContact | None = None,
) -> list[CrmContact]:
    """Bring a page of CRM records into the hub (see the module's drawing) in one
    transaction; should it clash with a concurrent write of the same person (a webhook beside
    a run), each record again in a transaction of its own. `tally` counts what committed.
    The records that failed for a reason that may pass are returned: they are to be read
    again."""
    tally.seen += len(records)
    admitted = _admitted(records, tally)
    if not admitted:
        return []
    try:
        async with store.sessions.begin() as session:
            outcomes = await _apply(session, policy, tenant, admitted, now=now)
    except (IntegrityError, DBAPIError):
        outcomes = [await _apply_alone(store, policy, tenant, r, now=now) for r in admitted]
    retry = []
    for record, outcome in zip(admitted, outcomes, strict=True):
        if outcome.kind == "failed":
            tally.failures += 1
        elif outcome.kind == "imported":
            tally.imported += 1
        elif outcome.kind == "updated":
            tally.updated += 1
        elif outcome.kind == "skipped_erased":
            tally.skipped_erased += 1
        tally.conflicts += outcome.conflicts
        if outcome.retry:
            retry.append(record)
        if outcome.changed is not None and on_contact is not None:
            await on_contact(outcome.changed, record.crm_id)
    return retry


def _admitted(records: list[CrmContact], tally: Tally) -> list[CrmContact]:
    """The records with values the store can keep."""
    admitted = []
    for record in records:
        values = record.fields
        too_long = [n for n in FIELDS if len(values.get(n) or "") > LIMITS[n]]
        if too_long:
            logger.warning("CRM record %s: %s too long to keep", record.crm_id, ", ".join(too_long))
            tally.failures += 1
            continue
        admitted.append(record)
    return admitted


async def _apply_alone(
    store: Store, policy: SyncPolicy, tenant: str, record: CrmContact, *, now: datetime
) -> Applied:
    tries = 3
    while True:
        tries -= 1
        try:
            async with store.sessions.begin() as session:
                (applied,) = await _apply(session, policy, tenant, [record], now=now)
            return applied
        except (IntegrityError, DBAPIError) as error:
            if tries == 0:
                logger.warning(
                    "CRM record %s could not be applied: %s", record.crm_id, type(error).__name__
                )
                # A unique key still taken after three tries is the data's (an email another
                # person holds here): reading it again changes nothing until the CRM does.
                return Applied("failed", retry=not isinstance(error, IntegrityError))


async def _apply(
    session: AsyncSession,
    policy: SyncPolicy,
    tenant: str,
    records: list[CrmContact],
    *,
    now: datetime,
) -> list[Applied]:
    """The records in one transaction: the contacts they may match, and the write-backs
    queued for those, read (and on PostgreSQL locked) in two statements, not per record."""
    known = await _Known.load(session, tenant, records)
    # Read after the candidates are locked, in this transaction: an erasure committed since
    # the page was listed is seen, and one still running waits for this transaction.
    emails = [e for r in records if (e := _normalised(r.fields.get("email")))]
    erased = await tombstoned_in(session, tenant, [r.crm_id for r in records] + emails)
    applied = []
    for record in records:
        email = _normalised(record.fields.get("email"))
        if record.crm_id in erased or (email is not None and email in erased):
            applied.append(Applied("skipped_erased"))
            continue
        row = known.match(record)
        if row is None:
            applied.append(_import(session, tenant, record, known, now))
        else:
            applied.append(await _merge(session, policy, record, row, known, now))
    if known.audit:
        await session.execute(insert(AuditEventRow), known.audit)
    return applied


@dataclass
class _Known:
    """The tenant's contacts a page of records may match, their queued write-backs, and the
    audit events the page writes."""

    tenant: str
    by_crm_id: dict[str, ContactRow] = field(default_factory=dict)
    by_email: dict[str, ContactRow] = field(default_factory=dict)
    by_phone: dict[str, list[ContactRow]] = field(default_factory=dict)
    queued: dict[str, list[CrmOutboxRow]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def load(cls, session: AsyncSession, tenant: str, records: list[CrmContact]) -> _Known:
        emails = {e for r in records if (e := _normalised(r.fields.get("email")))}
        phones = {p for r in records if (p := e164(r.fields.get("phone")))}
        matching = [col(ContactRow.crm_id).in_([r.crm_id for r in records])]
        if emails:
            matching.append(col(ContactRow.email_normalized).in_(emails))
        if phones:
            matching.append(col(ContactRow.phone_e164).in_(phones))
        rows = (
            await session.scalars(
                select(ContactRow)
                .where(col(ContactRow.tenant_id) == tenant, or_(*matching))
                .where(col(ContactRow.erased_at).is_(None))
                .order_by(col(ContactRow.id))
                .with_for_update()
            )
        ).all()
        known = cls(tenant)
        for row in rows:
            known.add(row)
        if rows:
            for entry in (
                await session.scalars(
                    select(CrmOutboxRow)
                    .where(col(CrmOutboxRow.contact_id).in_([row.id for row in rows]))
                    .order_by(col(CrmOutboxRow.id))
                )
            ).all():
                known.queued.setdefault(entry.contact_id, []).append(entry)
        return known

    def add(self, row: ContactRow) -> None:
        if row.crm_id is not None:
            self.by_crm_id[row.crm_id] = row
        if row.email_normalized is not None:
            self.by_email[row.email_normalized] = row
        if row.phone_e164 is not None:
            self.by_phone.setdefault(row.phone_e164, []).append(row)

    def match(self, record: CrmContact) -> ContactRow | None:
        """The contact linked to the record, else one not linked to another record with its
        email, else with its phone."""
        if record.crm_id in self.by_crm_id:
            return self.by_crm_id[record.crm_id]
        email = _normalised(record.fields.get("email"))
        row = None if email is None else self.by_email.get(email)
        if row is not None and row.crm_id is None:
            return row
        number = e164(record.fields.get("phone"))
        return next(
            (
                r
                for r in self.by_phone.get(number or "", [])
                if r.crm_id is None and _same_person(r, email, record.fields.get("fullName"))
            ),
            None,
        )

    def email_taken(self, record: CrmContact) -> bool:
        email = _normalised(record.fields.get("email"))
        return email is not None and email in self.by_email


def _same_person(row: ContactRow, email: str | None, name: str | None) -> bool:
    """Whether a contact sharing a record's phone may be its person: a number can be an
    office's, so the emails must not differ, or else the names must agree."""
    if row.email_normalized is None or email is None:
        return True
    return name is not None and (row.full_name or "").casefold() == name.casefold()


def _import(
    session: AsyncSession, tenant: str, record: CrmContact, known: _Known, now: datetime
) -> Applied:
    if known.email_taken(record):
        # The email is another CRM record's person here: the CRM holds a duplicate.
        logger.warning("CRM record %s: its email is another record's", record.crm_id)
        return Applied("failed")
    crm = {name: record.fields.get(name) for name in FIELDS}
    row = ContactRow(
        id=new_id("contact"),
        tenant_id=tenant,
        crm_id=record.crm_id,
        created_at=now,
        updated_at=now,
    )
    for name in FIELDS:
        _set(row, name, crm[name], at=record.updated_at)
    row.crm_base, row.crm_synced_at = dict(crm), now
    session.add(row)
    known.add(row)
    _audit(known, row.id, [n for n in FIELDS if crm[n] is not None], "imported", now)
    return Applied("imported", 0, row.id)


async def _merge(
    session: AsyncSession,
    policy: SyncPolicy,
    record: CrmContact,
    row: ContactRow,
    known: _Known,
    now: datetime,
) -> Applied:
    """A record into the contact it matched, field by field by `policy`."""
    tenant = row.tenant_id
    base = dict(row.crm_base or {})
    hub = row.synced()
    crm = {}
    for name in FIELDS:
        value = record.fields.get(name)
        # Written another way (an email's case, a phone's spaces), it is the same value.
        for same in (hub[name], base.get(name)):
            if (
                value is not None
                and same is not None
                and _canonical(name, value) == _canonical(name, same)
            ):
                value = same
        crm[name] = value
    queued = known.queued.get(row.id, [])
    in_flight = {name: value for entry in queued for name, value in entry.fields.items()}
    # Fields whose write-back the outbox is sending now: the CRM is about to hold its value.
    sending = {
        name
        for entry in queued
        if entry.claimed_until is not None and entry.claimed_until > now
        for name in entry.fields
    }
    changed: list[str] = []
    write_back: dict[str, Any] = {}
    settled: set[str] = set()
    conflicts = 0
    for name in FIELDS:
        agreed = name in base
        if in_flight.get(name, crm[name]) == hub[name] != crm[name] and (
            not agreed or crm[name] == base[name]
        ):
            continue  # the hub's value is on its way to the CRM, which has not changed since
        rule = policy.fields[name]
        outcome = decide(
            rule,
            base=base.get(name),
            agreed=agreed,
            hub=hub[name],
            crm=crm[name],
            hub_changed_at=field_changed_at(row, name),
            crm_changed_at=record.updated_at,
        )
        if outcome.value != hub[name]:
            _set(row, name, outcome.value, at=record.updated_at)
            changed.append(name)
        if outcome.value == crm[name] and name not in sending:
            base[name] = outcome.value
            settled.add(name)
        elif outcome.value == crm[name] or in_flight.get(name, crm[name]) != outcome.value:
            # Also the CRM's own value when a write-back on its way would undo it.
            write_back[name] = outcome.value
        if outcome.conflict:
            conflicts += 1
            session.add(
                SyncConflictRow(
                    tenant_id=tenant,
                    contact_id=row.id,
                    source=SOURCE,
                    field=name,
                    rule=rule,
                    winner=outcome.winner,
                    at=now,
                )
            )
    # A queued write-back of a field the CRM now agrees on (it won, or got there) would
    # undo that: it is taken out (not from one being sent: the one queued after it mends).
    for entry in queued:
        if entry.fields.keys() & settled and not entry.fields.keys() & sending:
            kept = {k: v for k, v in entry.fields.items() if k not in settled}
            if kept:
                entry.fields = kept
            else:
                await session.delete(entry)
    if row.crm_id is None:
        row.crm_id = record.crm_id
        known.add(row)
    row.crm_base, row.crm_synced_at = base, now
    if changed:
        row.updated_at = now
        _audit(known, row.id, changed, "updated", now)
    if write_back:
        session.add(_outbox(row, write_back, now))
    kind = "updated" if changed or write_back else "unchanged"
    return Applied(kind, conflicts, row.id if changed else None)


def _canonical(name: str, value: str) -> str:
    if name == "email":
        return value.strip().lower()
    if name == "phone":
        return e164(value) or value.strip()
    return value


def field_changed_at(row: ContactRow, name: str) -> datetime:
    """When the hub's value of a synchronised field last changed (the contact's creation
    when it never did since it was recorded)."""
    stamp = (row.field_changed_at or {}).get(name)
    return row.created_at if stamp is None else datetime.fromisoformat(stamp)


def _audit(known: _Known, contact_id: str, fields: list[str], what: str, now: datetime) -> None:
    """A written personal value on the audit trail, like any other write of one (the page's
    events are inserted together, at its end)."""
    known.audit.extend(
        {
            "at": now,
            "tenant_id": known.tenant,
            "principal": PRINCIPAL,
            "subject": contact_id,
            "coordinate": f"Contact.{name}",
            "decision": what,
            "reason": "CRM sync",
        }
        for name in fields
    )


def _outbox(row: ContactRow, fields: dict[str, Any], now: datetime) -> CrmOutboxRow:
    assert row.crm_id is not None
    return CrmOutboxRow(
        tenant_id=row.tenant_id,
        contact_id=row.id,
        crm_id=row.crm_id,
        fields=fields,
        created_at=now,
        next_attempt_at=now,
    )


def queue_write_back(
    session: AsyncSession,
    policy: SyncPolicy,
    row: ContactRow,
    before: dict[str, Any],
    now: datetime,
) -> None:
    """In a write's transaction: the hub-owned fields it changed on a linked contact, queued
    for the CRM (`before`: the fields' values before the write)."""
    if row.crm_id is None or row.erased_at is not None:
        return
    owned = policy.written_back()
    fields = {
        name: getattr(row, column)
        for name, column in SYNCED_COLUMNS.items()
        if name in owned and getattr(row, column) != before.get(name)
    }
    if fields:
        session.add(_outbox(row, fields, now))


async def sync_crm(
    store: Store,
    crm: CrmSource,
    policy: SyncPolicy,
    leases: Leases,
    *,
    tenant: str,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    on_contact: OnContact | None = None,
    clock: Clock = lambda: datetime.now(UTC),
) -> SyncReport:
    """One run for `tenant`: every record (`full`), else those changed since the last
    complete run, oldest change first. `SyncBusy` if another process syncs the tenant; a
    `SourceError` ends the run (what was applied stays, and the same run started again goes
    on from the last page kept).

    The next run lists from the newest change this one saw (a record changed while it ran
    comes after it in the listing, and is seen); from no later than this run's start (a
    record the CRM dates in the future must not hide the changes before it); and from before
    any record that failed for a reason that may pass (it is read again)."""
    lease = _job("crm-sync", tenant)
    if not await leases.acquire(lease, ttl_s=LEASE_S):
        raise SyncBusy(f"another process syncs tenant {tenant}")
    started = clock()
    tally = Tally()
    newest: datetime | None = None
    retry_from: datetime | None = None
    try:
        state = await sync_state(store, tenant)
        watermark = None if full or state is None else state.watermark
        since = EPOCH if watermark is None else watermark - OVERLAP
        job = _job("crm-sync-full" if watermark is None else "crm-sync", tenant)
        parameters = f"since={since.isoformat()}"
        cursor = await checkpoints.position(store, job, parameters)
        resumed = cursor is not None
        while True:
            page = await crm.changed_since(tenant, since, cursor=cursor)
            tally.failures += page.malformed
            retry = await apply_records(
                store, policy, tenant, page.contacts, tally, now=clock(), on_contact=on_contact
            )
            for record in page.contacts:
                newest = record.updated_at if newest is None else max(newest, record.updated_at)
            for record in retry:
                retry_from = min(retry_from or record.updated_at, record.updated_at)
            if progress is not None:
                progress(tally.seen)
            if page.cursor is None:
                break
            cursor = page.cursor
            await checkpoints.save(store, job, parameters, cursor, clock())
            if not await leases.acquire(lease, ttl_s=LEASE_S):
                raise SyncBusy("the sync lease was lost; another process goes on")
        await checkpoints.clear(store, job, parameters)
        if newest is not None:
            newest = min(newest, started)
            if retry_from is not None:
                newest = min(newest, retry_from - OVERLAP)
        await _count(store, tenant, tally, run_at=started, newest=newest, error=None)
        return SyncReport(tally, resumed, full)
    except SyncBusy:
        raise
    except Exception as error:
        tally.failures += 1
        await _count(store, tenant, tally, run_at=started, newest=None, error=type(error).__name__)
        raise
    finally:
        with contextlib.suppress(Exception):
            await leases.release(lease)


def _job(kind: str, tenant: str) -> str:
    """A lease's or checkpoint's name for a tenant, within the 64 characters they keep."""
    name = f"{kind}:{tenant}"
    if len(name) <= 64:
        return name
    return f"{kind}:{tenant[:30]}~{hashlib.sha256(tenant.encode()).hexdigest()[:16]}"


async def apply_change(
    store: Store,
    crm: CrmSource,
    policy: SyncPolicy,
    tenant: str,
    crm_id: str,
    *,
    on_contact: OnContact | None = None,
    clock: Clock = lambda: datetime.now(UTC),
) -> Tally:
    """A change the CRM announced: its record read as it is now (a late or reordered
    announcement brings nothing older back), and applied; nothing for a tenant that is not
    active (a suspended tenant's data stays as it is)."""
    tally = Tally()
    known = await find(store, tenant)
    if known is None or known.status != ACTIVE:
        return tally
    found = await crm.current(tenant, [crm_id])
    if crm_id in found:
        await apply_records(
            store, policy, tenant, [found[crm_id]], tally, now=clock(), on_contact=on_contact
        )
        await _count(store, tenant, tally, run_at=None, newest=None, error=None)
    return tally


async def sync_state(store: Store, tenant: str) -> SyncStateRow | None:
    async with store.sessions() as session:
        return await session.get(SyncStateRow, (tenant, SOURCE))


async def pending_write_backs(store: Store, tenant: str) -> tuple[int, datetime | None]:
    """How many changes still wait for the CRM, and since when the oldest has."""
    statement = select(func.count(), func.min(col(CrmOutboxRow.created_at))).where(
        col(CrmOutboxRow.tenant_id) == tenant
    )
    async with store.sessions() as session:
        count, oldest = (await session.execute(statement)).one()
    return int(count), oldest


async def _count(
    store: Store,
    tenant: str,
    tally: Tally,
    *,
    run_at: datetime | None,
    newest: datetime | None,
    error: str | None,
) -> None:
    """Add a run's (or a webhook's, `run_at` None) counts to the tenant's sync state."""
    for attempt in range(3):
        try:
            async with store.sessions.begin() as session:
                state = await session.get(SyncStateRow, (tenant, SOURCE), with_for_update=True)
                if state is None:
                    state = SyncStateRow(tenant_id=tenant, source=SOURCE)
                    session.add(state)
                state.imported += tally.imported
                state.updated += tally.updated
                state.conflicts += tally.conflicts
                state.failures += tally.failures
                state.skipped_erased += tally.skipped_erased
                if run_at is not None:
                    state.last_run_at = run_at
                    state.last_error = error
                    if error is None:
                        state.last_success_at = run_at
                        if newest is not None and (
                            state.watermark is None or newest > state.watermark
                        ):
                            state.watermark = newest
            return
        except (IntegrityError, DBAPIError):
            if attempt == 2:
                raise


class CrmSyncSchedule(PeriodicJob[Tally]):
    """An incremental run for every active tenant, every `interval_s`, on whichever process
    holds each tenant's lease."""

    name = "crm-sync-schedule"

    def __init__(
        self,
        store: Store,
        crm: Callable[[], CrmSource | None],
        policy: SyncPolicy,
        *,
        interval_s: float,
        on_contact: OnContact | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self.store = store
        self.crm = crm
        self.policy = policy
        self.on_contact = on_contact
        self.sync_leases = Leases(store.sessions)

    async def run_once(self) -> Tally:
        total = Tally()
        crm = self.crm()
        if crm is None:
            return total
        for tenant in await listed(self.store):
            if tenant.status != ACTIVE:
                continue
            try:
                report = await sync_crm(
                    self.store,
                    crm,
                    self.policy,
                    self.sync_leases,
                    tenant=tenant.id,
                    on_contact=self.on_contact,
                )
            except SyncBusy:
                continue
            except Exception:
                # Counted in its sync state; the other tenants still get their round.
                logger.exception("CRM sync of tenant %s failed", tenant.id)
                continue
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(report.tally, name))
        return total

    def report(self, outcome: Tally) -> None:
        if outcome.seen:
            logger.info(
                "CRM sync: %d records, %d imported, %d updated, %d conflicts, %d failures",
                outcome.seen,
                outcome.imported,
                outcome.updated,
                outcome.conflicts,
                outcome.failures,
            )


class CrmOutbox(PeriodicJob[int]):
    """Sends the queued write-backs (`crm_outbox`), oldest first, each until the CRM takes it."""

    name = "crm-outbox"

    def __init__(
        self,
        store: Store,
        crm: Callable[[], CrmSource | None],
        *,
        interval_s: float,
        leases: Leases | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(interval_s=interval_s, leases=leases)
        self.store = store
        self.crm = crm
        self.clock = clock

    async def run_once(self, limit: int = 1000) -> int:
        """Send what is due now, up to `limit`; how many the CRM took. A contact's changes
        go in the order they were made: only its oldest is sent at a time."""
        crm = self.crm()
        if crm is None:
            return 0
        taken = 0
        while taken < limit:
            rows = await self._claim_heads(min(limit - taken, 100))
            if not rows:
                break
            # Each row claimed is then sent, dropped or put off: none comes back this run.
            taken += sum(await self._send(crm, rows))
        return taken

    async def _claim_heads(self, limit: int) -> list[CrmOutboxRow]:
        """The oldest queued change of each contact that is due, claimed for this process."""
        now = self.clock()
        heads = select(func.min(col(CrmOutboxRow.id))).group_by(col(CrmOutboxRow.contact_id))
        async with self.store.sessions() as session:
            due = (
                await session.scalars(
                    select(col(CrmOutboxRow.id))
                    .where(col(CrmOutboxRow.id).in_(heads))
                    .where(col(CrmOutboxRow.next_attempt_at) <= now)
                    .where(
                        or_(
                            col(CrmOutboxRow.claimed_until).is_(None),
                            col(CrmOutboxRow.claimed_until) < now,
                        )
                    )
                    .order_by(col(CrmOutboxRow.id))
                    .limit(limit)
                )
            ).all()
        claimed = []
        for outbox_id in due:
            async with self.store.sessions.begin() as session:
                won = await session.execute(
                    update(CrmOutboxRow)
                    .where(col(CrmOutboxRow.id) == outbox_id)
                    .where(
                        or_(
                            col(CrmOutboxRow.claimed_until).is_(None),
                            col(CrmOutboxRow.claimed_until) < now,
                        )
                    )
                    .values(claimed_until=now + timedelta(seconds=OUTBOX_CLAIM_S))
                )
                row = (
                    await session.get(CrmOutboxRow, outbox_id)
                    if getattr(won, "rowcount", 0)
                    else None
                )
            if row is not None:
                claimed.append(row)
        return claimed

    async def _send(self, crm: CrmSource, rows: list[CrmOutboxRow]) -> list[bool]:
        """Each row's change to the CRM, `MAX_SENDING` at once, once the CRM says each
        record is the row's tenant's (a CRM id given by one tenant may name another's record:
        that change is dropped, never written there)."""
        owned: set[tuple[str, str]] = set()
        reachable: set[str] = set()
        for tenant in sorted({row.tenant_id for row in rows}):
            ids = sorted({row.crm_id for row in rows if row.tenant_id == tenant})
            try:
                owned.update((tenant, crm_id) for crm_id in await crm.current(tenant, ids))
                reachable.add(tenant)
            except SourceError as error:
                for row in rows:
                    if row.tenant_id == tenant:
                        await self._failed(row, error)
        gate = asyncio.Semaphore(MAX_SENDING)

        async def send(row: CrmOutboxRow) -> bool:
            if (row.tenant_id, row.crm_id) not in owned:
                logger.warning("CRM write-back %s: the tenant has no such CRM record", row.id)
                await self._sent(row, taken=False)
                return False
            async with gate:
                try:
                    taken = await crm.write(row.crm_id, row.fields, key=row.key)
                except SourceError as error:
                    await self._failed(row, error)
                    return False
            await self._sent(row, taken=taken)
            return taken

        return list(
            await asyncio.gather(*(send(row) for row in rows if row.tenant_id in reachable))
        )

    async def _failed(self, row: CrmOutboxRow, error: Exception) -> None:
        attempts = row.attempts + 1
        if attempts >= MAX_OUTBOX_ATTEMPTS:
            # Refused that often (a value the CRM does not take, say): given up, so that the
            # contact's later changes go, and its values are not kept here for ever.
            logger.error(
                "CRM write-back %s given up after %d attempts: %s",
                row.id,
                attempts,
                type(error).__name__,
            )
            await self._sent(row, taken=False)
            await _count(
                self.store, row.tenant_id, Tally(failures=1), run_at=None, newest=None, error=None
            )
            return
        delay = OUTBOX_BACKOFF_S[min(attempts - 1, len(OUTBOX_BACKOFF_S) - 1)]
        logger.warning(
            "CRM write-back %s failed (attempt %d, next in %d s): %s",
            row.id,
            attempts,
            delay,
            type(error).__name__,
        )
        async with self.store.sessions.begin() as session:
            await session.execute(
                update(CrmOutboxRow)
                .where(col(CrmOutboxRow.id) == row.id)
                .values(
                    attempts=attempts,
                    next_attempt_at=self.clock() + timedelta(seconds=delay),
                    claimed_until=None,
                    last_error=type(error).__name__,
                )
            )

    async def _sent(self, row: CrmOutboxRow, *, taken: bool) -> None:
        """The row is done with (sent, or dropped); what the CRM took, both sides now hold."""
        async with self.store.sessions.begin() as session:
            done = await session.get(CrmOutboxRow, row.id)
            if done is not None:
                await session.delete(done)
            contact = await session.get(ContactRow, row.contact_id, with_for_update=True)
            if taken and contact is not None and contact.crm_id == row.crm_id:
                # What the CRM holds now, whatever the hub changed since: the next sync
                # tells a later change in either system from this one.
                contact.crm_base = {**(contact.crm_base or {}), **row.fields}
