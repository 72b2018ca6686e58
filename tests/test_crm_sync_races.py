"""CRM sync when things happen at once: edits on both sides around write-backs in flight,
changes while a run lists, erasures while a page applies, failing tenants and records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import col
from starlette.applications import Starlette

from hub import crm_sync
from hub.crm_sync import CrmOutbox, CrmSyncSchedule, apply_change, sync_crm, sync_state
from hub.errors import SourceUnavailable
from hub.sources.crm import CrmContact, CrmPage, CrmSource, _page
from hub.store.leases import Leases
from hub.store.tables import ContactRow, CrmOutboxRow
from tests.conftest import MakeToken
from tests.helpers import gql
from tests.test_crm_sync import UPSERT, _by_crm_id, _count, _record, _sync, crm_control, hub

__all__ = ["crm_control", "hub"]  # fixtures


async def _agreed(app: Starlette) -> CrmOutbox:
    """A first full sync, its write-backs sent and seen: both sides agree on everyone."""
    state = app.state.hub
    await _sync(app, full=True)
    outbox = CrmOutbox(state.store, lambda: state.sources.crm, interval_s=3600)
    await outbox.run_once()
    await _sync(app)
    return outbox


async def _upsert(client: httpx.AsyncClient, token: str, contact_id: str, **fields: str) -> None:
    _, done = await gql(
        client, UPSERT, token=token, variables={"input": {"id": contact_id, **fields}}
    )
    assert "errors" not in done, done


async def test_a_hub_edit_undone_before_its_write_back_ends_with_the_last_edit_on_both_sides(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    outbox = await _agreed(app)
    contact = await _by_crm_id(app, "crm-acme-00004")
    original = contact.phone
    assert original is not None
    admin = make_token(roles=["admin"])
    await _upsert(client, admin, contact.id, phone="+48 600 000 002")
    await _upsert(client, admin, contact.id, phone=original)
    assert await outbox.run_once(limit=1) == 1  # the first write-back is taken
    await _sync(app)  # a run before the second is sent
    await outbox.run_once()
    row = await _by_crm_id(app, "crm-acme-00004")
    record = await _record(crm_control, "crm-acme-00004")
    assert (row.phone, record["tel"]) == (original, original)


async def test_the_crms_later_change_wins_over_a_write_back_already_on_its_way(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = hub
    state = app.state.hub
    outbox = await _agreed(app)
    contact = await _by_crm_id(app, "crm-acme-00010")
    await _upsert(client, make_token(roles=["admin"]), contact.id, phone="+48 600 000 010")
    await asyncio.sleep(0.01)
    crm = state.sources.crm
    assert isinstance(crm, CrmSource)
    write = crm.write

    async def slow_write(crm_id: str, fields: Any, *, key: str) -> bool:
        # While the PATCH is on its way: a person changes the phone at the CRM, and a run
        # reads it.
        edit = {"tel": "+48 22 555 44 33"}
        assert (await crm_control.post(f"/_control/contacts/{crm_id}", json=edit)).is_success
        await _sync(app)
        return await write(crm_id, fields, key=key)

    monkeypatch.setattr(crm, "write", slow_write)
    await outbox.run_once(limit=1)
    monkeypatch.setattr(crm, "write", write)
    await outbox.run_once()  # what the run queued to mend it
    await _sync(app)
    row = await _by_crm_id(app, "crm-acme-00010")
    record = await _record(crm_control, "crm-acme-00010")
    assert (row.phone, record["tel"]) == ("+48 22 555 44 33", "+48 22 555 44 33")


async def test_newest_compares_the_changes_of_the_field_not_of_the_contact(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    await _agreed(app)
    contact = await _by_crm_id(app, "crm-acme-00006")
    admin = make_token(roles=["admin"])
    await _upsert(client, admin, contact.id, phone="+48 600 000 003")  # the phone, first
    await asyncio.sleep(0.02)
    edit = {"tel": "+48 22 999 88 77"}  # then the phone at the CRM
    assert (await crm_control.post("/_control/contacts/crm-acme-00006", json=edit)).is_success
    await asyncio.sleep(0.02)
    await _upsert(client, admin, contact.id, fullName="Renamed")  # then only the name
    await _sync(app)
    row = await _by_crm_id(app, "crm-acme-00006")
    assert (row.phone, row.full_name) == ("+48 22 999 88 77", "Renamed")


async def test_a_record_changed_while_a_full_run_lists_is_seen_by_that_run(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _client = hub
    crm = app.state.hub.sources.crm
    assert isinstance(crm, CrmSource)
    listing = crm.changed_since
    pages: list[int] = []

    async def small_pages(
        tenant: str, since: datetime | None, *, cursor: str | None, limit: int = 100
    ) -> CrmPage:
        if len(pages) == 1:  # after the first page: a record it held changes at the CRM
            ids = [c.crm_id for c in first.contacts]
            edit = {"title": "Changed Mid-Run"}
            assert (await crm_control.post(f"/_control/contacts/{ids[0]}", json=edit)).is_success
        page = await listing(tenant, since, cursor=cursor, limit=10)
        pages.append(len(page.contacts))
        return page

    first = await listing("acme", crm_sync.EPOCH, cursor=None, limit=10)
    monkeypatch.setattr(crm, "changed_since", small_pages)
    tally = await _sync(app, full=True)
    assert (await _by_crm_id(app, first.contacts[0].crm_id)).job_title == "Changed Mid-Run"
    assert tally.seen == 101 and len(pages) == 11


async def test_a_record_dated_in_the_future_does_not_hide_later_changes(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, _client = hub
    state = app.state.hub
    future = CrmContact(
        "crm-acme-90009",
        {"fullName": "F", "email": "f9@example.com", "phone": None, "company": None},
        datetime(2099, 1, 1, tzinfo=UTC),
    )

    class Skewed:
        async def changed_since(self, *_args: Any, **_kwargs: Any) -> CrmPage:
            return CrmPage([future], None)

    started = datetime.now(UTC)
    await sync_crm(
        state.store,
        cast(CrmSource, Skewed()),
        state.policies.sync,
        Leases(state.store.sessions),
        tenant="acme",
    )
    kept = await sync_state(state.store, "acme")
    assert kept is not None and kept.watermark is not None
    assert started <= kept.watermark <= datetime.now(UTC)


async def test_a_person_erased_while_their_page_applies_is_not_imported_again(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = hub
    state = app.state.hub
    contact = await _by_crm_id(app, "crm-acme-00009")
    email = (await _record(crm_control, "crm-acme-00009"))["email_address"].lower()
    load = crm_sync._Known.load

    async def erased_first(session: Any, tenant: str, records: Any) -> Any:
        # The record was read from the CRM; the person is erased before it is applied.
        erase = "mutation($id: ID!) { eraseContact(id: $id) { complete } }"
        _, erased = await gql(
            client, erase, token=make_token(roles=["dpo"]), variables={"id": contact.id}
        )
        assert "errors" not in erased, erased
        return await load(session, tenant, records)

    monkeypatch.setattr(crm_sync._Known, "load", erased_first)
    crm = state.sources.crm
    assert isinstance(crm, CrmSource)
    tally = await apply_change(state.store, crm, state.policies.sync, "acme", "crm-acme-00009")
    assert tally.skipped_erased == 1 and tally.imported == 0
    async with state.store.sessions() as session:
        back = (
            await session.scalars(
                select(ContactRow).where(col(ContactRow.email_normalized) == email)
            )
        ).all()
    assert back == []


async def test_a_tenant_whose_sync_fails_does_not_keep_the_others_from_theirs(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, _client = hub
    state = app.state.hub
    seen: list[str] = []

    class Failing:
        async def changed_since(self, tenant: str, *_args: Any, **_kwargs: Any) -> CrmPage:
            seen.append(tenant)
            if tenant == "acme":
                raise SourceUnavailable("crm", "The crm source is unavailable: HTTP 500.")
            return CrmPage([], None)

    schedule = CrmSyncSchedule(
        state.store,
        lambda: cast(CrmSource, Failing()),
        state.policies.sync,
        interval_s=3600,
    )
    await schedule.run_once()
    assert seen == ["acme", "globex", "initech"]
    failed = await sync_state(state.store, "acme")
    assert failed is not None and failed.last_error == "SourceUnavailable"


def test_a_record_the_crm_sends_malformed_is_left_out_not_the_page() -> None:
    good = {
        "contact_id": "crm-acme-00001",
        "workspace": "acme",
        "name": "Ada Keller",
        "tel": "+48 22 100 20 30",
        "updated": "2026-03-01T10:00:00Z",
    }
    payload = {
        "contacts": [
            good,
            {**good, "contact_id": "crm-acme-00002", "tel": 4822111},
            {"contact_id": "crm-acme-00003"},
            {**good, "contact_id": "crm-globex-00001", "workspace": "globex"},
        ],
        "next_cursor": "c2",
    }
    page = _page("acme")(payload)
    assert [c.crm_id for c in page.contacts] == ["crm-acme-00001"]
    assert (page.malformed, page.cursor) == (2, "c2")


async def test_a_write_back_refused_twenty_times_is_given_up_and_the_next_goes(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = hub
    state = app.state.hub
    outbox = await _agreed(app)
    contact = await _by_crm_id(app, "crm-acme-00011")
    admin = make_token(roles=["admin"])
    await _upsert(client, admin, contact.id, fullName="First")
    await _upsert(client, admin, contact.id, fullName="Second")
    async with state.store.sessions.begin() as session:
        head = min((await session.scalars(select(col(CrmOutboxRow.id)))).all())
        await session.execute(
            update(CrmOutboxRow).where(col(CrmOutboxRow.id) == head).values(attempts=19)
        )
    failures = (await sync_state(state.store, "acme") or pytest.fail()).failures
    crm = state.sources.crm
    assert isinstance(crm, CrmSource)
    write = crm.write

    async def refusing_the_first(crm_id: str, fields: Any, *, key: str) -> bool:
        if fields == {"fullName": "First"}:
            raise SourceUnavailable("crm", "The crm source is unavailable: HTTP 422.")
        return await write(crm_id, fields, key=key)

    monkeypatch.setattr(crm, "write", refusing_the_first)
    assert await outbox.run_once() == 1  # the first given up, the second no longer behind it
    assert await _count(app, CrmOutboxRow) == 0
    assert (await _record(crm_control, "crm-acme-00011"))["name"] == "Second"
    assert (await sync_state(state.store, "acme") or pytest.fail()).failures == failures + 1


@pytest.mark.parametrize(
    ("error", "read_again"),
    [
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
        (OperationalError("UPDATE", {}, Exception("database is locked")), True),
    ],
    ids=["a-key-the-data-holds", "a-store-that-may-pass"],
)
async def test_only_a_failure_that_may_pass_holds_the_watermark_back(
    hub: tuple[Starlette, httpx.AsyncClient],
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    read_again: bool,
) -> None:
    app, _client = hub
    state = app.state.hub
    when = datetime(2026, 3, 1, tzinfo=UTC)
    failing = CrmContact("crm-acme-90010", {"email": "x@example.com"}, when)
    later = CrmContact("crm-acme-90011", {"email": "y@example.com"}, when + timedelta(days=1))

    class Listing:
        async def changed_since(self, *_args: Any, **_kwargs: Any) -> CrmPage:
            return CrmPage([failing, later], None)

    apply = crm_sync._apply

    async def refusing(session: Any, policy: Any, tenant: str, records: Any, **kw: Any) -> Any:
        if any(r.crm_id == failing.crm_id for r in records):
            raise error
        return await apply(session, policy, tenant, records, **kw)

    monkeypatch.setattr(crm_sync, "_apply", refusing)
    report = await sync_crm(
        state.store,
        cast(CrmSource, Listing()),
        state.policies.sync,
        Leases(state.store.sessions),
        tenant="acme",
    )
    kept = await sync_state(state.store, "acme")
    assert (report.tally.failures, report.tally.imported) == (1, 1)
    assert kept is not None and kept.watermark is not None
    assert (kept.watermark < when) is read_again
