"""CRM sync against the CRM simulator over real HTTP: import without duplicates, each field's
rule on an incremental run, webhooks, tombstones, and the outbox through an outage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlmodel import col
from starlette.applications import Starlette

from hub import tenants
from hub.app import create_app
from hub.crm_sync import CrmOutbox, Tally, apply_change, sync_crm
from hub.settings import DEV_WEBHOOK_SECRET, Settings
from hub.sources.cache import cache_key, create_cache, subject_tag
from hub.sources.crm import CrmSource
from hub.store.leases import Leases
from hub.store.tables import AuditEventRow, ContactRow, CrmOutboxRow, SyncConflictRow
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql, served

LISTED = 100
"""Records the CRM simulator lists per demo tenant."""
UPSERT = """mutation($input: ContactInput!) { upsertContact(input: $input) { id } }"""
STATUS = """{ syncStatus { source lastSuccessAt lagSeconds imported updated conflicts failures
  skippedErased pendingWriteBacks } }"""


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    # The outbox is sent by the test, not by the background job.
    quiet = settings.model_copy(update={"crm_outbox_interval_s": 3600.0})
    async with running_app(quiet) as running:
        yield running


@pytest.fixture
async def crm_control(
    hub: tuple[Starlette, httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the CRM simulator itself: its API and its control routes."""
    url = hub[0].state.hub.upstreams.simulators.urls["crm"]
    headers = {"Authorization": "Bearer sim-dev-key"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        yield client


async def _sync(app: Starlette, *, full: bool = False, tenant: str = "acme") -> Tally:
    state = app.state.hub
    assert isinstance(state.sources.crm, CrmSource)
    report = await sync_crm(
        state.store,
        state.sources.crm,
        state.policies.sync,
        Leases(state.store.sessions),
        tenant=tenant,
        full=full,
    )
    return report.tally


async def _contacts(app: Starlette, tenant: str = "acme") -> list[ContactRow]:
    async with app.state.hub.store.sessions() as session:
        statement = select(ContactRow).where(col(ContactRow.tenant_id) == tenant)
        return list((await session.scalars(statement)).all())


async def _by_crm_id(app: Starlette, crm_id: str) -> ContactRow:
    found = [row for row in await _contacts(app) if row.crm_id == crm_id]
    assert len(found) == 1, found
    return found[0]


async def _record(crm: httpx.AsyncClient, crm_id: str) -> dict[str, Any]:
    response = await crm.get(f"/v1/contacts/{crm_id}")
    assert response.status_code == 200
    record: dict[str, Any] = response.json()
    return record


async def _count(app: Starlette, table: Any, *where: Any) -> int:
    async with app.state.hub.store.sessions() as session:
        statement = select(func.count()).select_from(table).where(*where)
        return int((await session.execute(statement)).scalar_one())


async def test_a_full_sync_imports_the_crms_contacts_without_duplicates(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    seeded = await _contacts(app)
    assert seeded and all(row.crm_id for row in seeded)
    # People the hub holds without a CRM link: the CRM knows one by email (written in
    # another case) and one by phone (written another way, under the same name); a third
    # shares another record's phone only (an office's number): not the same person.
    by_email = await _record(crm_control, "crm-acme-00050")
    by_phone = await _record(crm_control, "crm-acme-00051")
    office = await _record(crm_control, "crm-acme-00052")
    manager = make_token(roles=["admin"])
    for contact in (
        {"email": by_email["email_address"].upper(), "fullName": "Known By Email"},
        {
            "email": "phone.only@example.com",
            "fullName": by_phone["name"],
            "phone": by_phone["tel"].replace(" ", ""),
        },
        {"email": "colleague@example.com", "fullName": "A Colleague", "phone": office["tel"]},
    ):
        _, made = await gql(client, UPSERT, token=manager, variables={"input": contact})
        assert "errors" not in made, made
    before = len(await _contacts(app))

    tally = await _sync(app, full=True)

    rows = await _contacts(app)
    crm_ids = [row.crm_id for row in rows if row.crm_id]
    assert sorted(crm_ids) == [f"crm-acme-{n:05d}" for n in range(LISTED)]
    assert len(rows) == before + LISTED - len(seeded) - 2 == LISTED + 1
    assert tally.seen == LISTED and tally.imported == LISTED - len(seeded) - 2
    assert tally.failures == 0 and tally.skipped_erased == 0
    linked = await _by_crm_id(app, "crm-acme-00050")
    assert linked.full_name == "Known By Email"  # fullName: hub, and the hub had one
    assert linked.job_title == by_email["title"]  # the hub had none: taken from the CRM
    assert (await _by_crm_id(app, "crm-acme-00051")).email == "phone.only@example.com"
    colleague = [row for row in rows if row.email == "colleague@example.com"]
    assert len(colleague) == 1 and colleague[0].crm_id is None
    imported = await _by_crm_id(app, "crm-acme-00099")
    assert (imported.full_name, imported.email) == (
        (await _record(crm_control, "crm-acme-00099"))["name"],
        (await _record(crm_control, "crm-acme-00099"))["email_address"],
    )
    # Imported personal data is on the audit trail, written by the sync.
    events = await _count(
        app,
        AuditEventRow,
        col(AuditEventRow.subject) == imported.id,
        col(AuditEventRow.principal) == "sync:crm",
        col(AuditEventRow.decision) == "imported",
    )
    assert events == 5
    # The other tenants' records stay theirs.
    assert not [row for row in await _contacts(app, "globex") if row.crm_id == "crm-acme-00099"]

    again = await _sync(app, full=True)
    assert (again.imported, again.updated, again.conflicts) == (0, 0, 0)
    assert len(await _contacts(app)) == LISTED + 1

    _, status = await gql(client, STATUS, token=make_token(roles=["admin"]))
    sync = status["data"]["syncStatus"]
    assert sync["source"] == "crm" and sync["imported"] == tally.imported
    assert sync["lastSuccessAt"] is not None and 0 <= sync["lagSeconds"] < 60
    assert sync["conflicts"] == tally.conflicts > 0  # the seeded people differ at the CRM
    assert sync["pendingWriteBacks"] == await _count(app, CrmOutboxRow) > 0
    _, refused = await gql(client, STATUS, token=make_token(roles=["analyst"]))
    assert codes(refused) == ["FORBIDDEN"]


async def test_an_incremental_sync_applies_each_fields_rule_and_records_each_conflict(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    state = app.state.hub
    await _sync(app, full=True)
    outbox = CrmOutbox(state.store, lambda: state.sources.crm, interval_s=3600)
    written_back = await outbox.run_once()  # the first sync's: both sides now agree
    assert written_back > 0 and await _count(app, CrmOutboxRow) == 0
    contact = await _by_crm_id(app, "crm-acme-00003")
    conflicts_before = await _count(app, SyncConflictRow)

    # The hub changes the name (hub-owned), the phone (newest) and the company (CRM-owned)...
    _, changed = await gql(
        client,
        UPSERT,
        token=make_token(roles=["admin"]),
        variables={
            "input": {
                "id": contact.id,
                "fullName": "Hub Name",
                "phone": "+48 600 000 001",
                "company": "Hub Company",
            }
        },
    )
    assert "errors" not in changed, changed
    # ...and only the name is written back, in the write's transaction.
    async with state.store.sessions() as session:
        queued = (await session.scalars(select(CrmOutboxRow))).all()
    assert [(row.crm_id, row.fields) for row in queued] == [
        ("crm-acme-00003", {"fullName": "Hub Name", "phone": "+48 600 000 001"})
    ]
    # Before it is sent, a person at the CRM changes the name, the phone and the title.
    await asyncio.sleep(0.01)
    edit = {"name": "CRM Name", "tel": "+48 22 111 22 33", "title": "CRM Title"}
    assert (await crm_control.post("/_control/contacts/crm-acme-00003", json=edit)).is_success

    tally = await _sync(app)

    # Only what changed since the last run: the records written back, the one edited, and
    # what the 5 s overlap lists again.
    assert tally.seen <= written_back + 2
    row = await _by_crm_id(app, "crm-acme-00003")
    assert row.full_name == "Hub Name"  # hub: the hub's value, a conflict
    assert row.phone == "+48 22 111 22 33"  # newest: the CRM changed last, a conflict
    assert row.phone_e164 == "+48221112233"
    assert row.job_title == "CRM Title"  # crm: changed at the CRM only
    assert row.company == (await _record(crm_control, "crm-acme-00003"))["organisation"]["name"]
    async with state.store.sessions() as session:
        conflicts = (
            await session.scalars(
                select(SyncConflictRow).where(col(SyncConflictRow.contact_id) == contact.id)
            )
        ).all()
    recorded = sorted((c.field, c.rule, c.winner) for c in conflicts[-2:])
    assert recorded == [("fullName", "hub", "hub"), ("phone", "newest", "crm")]
    assert await _count(app, SyncConflictRow) == conflicts_before + 2
    assert tally.conflicts == 2

    assert await outbox.run_once() == 1
    record = await _record(crm_control, "crm-acme-00003")
    assert (record["name"], record["tel"]) == ("Hub Name", "+48 22 111 22 33")
    # Both agree now: the next run changes nothing and finds no conflict.
    after = await _sync(app)
    assert (after.updated, after.conflicts) == (0, 0)


async def test_a_crm_webhook_lands_the_change_in_under_a_second(
    sqlite_settings: Settings,
) -> None:
    app = create_app(sqlite_settings.model_copy(update={"crm_outbox_interval_s": 3600.0}))
    async with served(app) as url:
        crm_url = app.state.hub.upstreams.simulators.urls["crm"]
        headers = {"Authorization": "Bearer sim-dev-key"}
        async with httpx.AsyncClient(base_url=crm_url, headers=headers) as crm_control:
            await _sync(app, full=True)
            target = {"url": f"{url}/webhooks/crm", "secret": DEV_WEBHOOK_SECRET}
            plan = {**target, "duplicate_rate": 1}
            assert (await crm_control.post("/_control/crm-webhooks", json=plan)).is_success
            started = time.monotonic()
            edit = {"title": "Head of Everything"}
            changed = await crm_control.post("/_control/contacts/crm-acme-00007", json=edit)
            assert changed.is_success
            while (await _by_crm_id(app, "crm-acme-00007")).job_title != "Head of Everything":
                assert time.monotonic() - started < 1.0, "the change did not land within 1 s"
                await asyncio.sleep(0.02)
            landed = time.monotonic() - started
            feed = (await crm_control.get("/_control/crm-webhooks")).json()
            while feed["deliveries"] < 2:
                await asyncio.sleep(0.02)
                feed = (await crm_control.get("/_control/crm-webhooks")).json()
            await crm_control.delete("/_control/crm-webhooks")
    assert landed < 1.0
    # Sent twice (the same event id): kept once, answered 202 then 200.
    assert sorted(feed["answers"].items()) == [("200", 1), ("202", 1)]


async def test_an_erased_person_stays_erased_through_a_full_sync(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    contact = await _by_crm_id(app, "crm-acme-00005")
    # The CRM is down while the person is erased: its copy stays there for now.
    await crm_control.post("/_control/fault", json={"mode": "down"})
    erase = "mutation($id: ID!) { eraseContact(id: $id) { complete } }"
    _, erased = await gql(
        client, erase, token=make_token(roles=["dpo"]), variables={"id": contact.id}
    )
    assert erased["data"]["eraseContact"]["complete"] is False
    await crm_control.post("/_control/fault", json={"mode": "none"})
    await _record(crm_control, "crm-acme-00005")  # still listed by the CRM

    tally = await _sync(app, full=True)

    assert tally.skipped_erased == 1
    rows = await _contacts(app)
    assert not [row for row in rows if row.crm_id == "crm-acme-00005"]
    email = (await _record(crm_control, "crm-acme-00005"))["email_address"]
    assert not [row for row in rows if row.email_normalized == email.lower()]
    assert len([row for row in rows if row.erased_at is None]) == LISTED - 1


async def test_a_hub_change_reaches_the_crm_even_when_the_crm_was_down(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    state = app.state.hub
    contact = await _by_crm_id(app, "crm-acme-00002")
    now = datetime.now(UTC)
    clock = [now]
    outbox = CrmOutbox(
        state.store, lambda: state.sources.crm, interval_s=3600, clock=lambda: clock[0]
    )
    await outbox.run_once()  # nothing queued yet but what the seeded link needs
    await crm_control.post("/_control/fault", json={"mode": "down"})
    _, changed = await gql(
        client,
        UPSERT,
        token=make_token(roles=["admin"]),
        variables={"input": {"id": contact.id, "fullName": "Written While Down"}},
    )
    assert "errors" not in changed, changed
    now = clock[0] = datetime.now(UTC)
    assert await outbox.run_once() == 0
    async with state.store.sessions() as session:
        waiting = (await session.scalars(select(CrmOutboxRow))).one()
    assert waiting.attempts == 1 and waiting.last_error == "SourceUnavailable"
    await crm_control.post("/_control/fault", json={"mode": "none"})
    assert await outbox.run_once() == 0  # not before its backoff
    clock[0] = now + timedelta(seconds=6)
    assert await outbox.run_once() == 1
    assert (await _record(crm_control, "crm-acme-00002"))["name"] == "Written While Down"
    assert await _count(app, CrmOutboxRow) == 0


async def test_a_write_back_never_changes_another_workspaces_record(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    state = app.state.hub
    theirs = await _record(crm_control, "crm-globex-00021")
    contact = {"email": "claims@example.com", "fullName": "Not Theirs", "crmId": "crm-globex-00021"}
    _, made = await gql(
        client, UPSERT, token=make_token(roles=["admin"]), variables={"input": contact}
    )
    assert "errors" not in made, made
    assert await _count(app, CrmOutboxRow) == 1
    outbox = CrmOutbox(state.store, lambda: state.sources.crm, interval_s=3600)
    assert await outbox.run_once() == 0
    assert await _count(app, CrmOutboxRow) == 0  # dropped, not retried
    assert await _record(crm_control, "crm-globex-00021") == theirs


async def test_a_suspended_tenants_crm_changes_wait_until_it_is_resumed(
    hub: tuple[Starlette, httpx.AsyncClient], crm_control: httpx.AsyncClient
) -> None:
    app, _client = hub
    state = app.state.hub
    crm = state.sources.crm
    assert isinstance(crm, CrmSource)
    edit = {"title": "While Suspended"}
    assert (await crm_control.post("/_control/contacts/crm-acme-00008", json=edit)).is_success
    await tenants.set_status(state.store, "acme", tenants.SUSPENDED)
    skipped = await apply_change(state.store, crm, state.policies.sync, "acme", "crm-acme-00008")
    assert skipped.seen == 0
    assert (await _by_crm_id(app, "crm-acme-00008")).job_title is None
    await tenants.set_status(state.store, "acme", tenants.ACTIVE)
    applied = await apply_change(state.store, crm, state.policies.sync, "acme", "crm-acme-00008")
    assert applied.seen == 1
    assert (await _by_crm_id(app, "crm-acme-00008")).job_title == "While Suspended"


async def test_the_command_line_sync_purges_what_running_hubs_cached_of_the_contacts_it_changed(
    sqlite_settings: Settings,
) -> None:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; the shared cache is Redis")
    namespace = f"hub-test-{uuid.uuid4().hex[:8]}"
    settings = sqlite_settings.model_copy(update={"crm_outbox_interval_s": 3600.0})
    async with running_app(settings) as (app, _client):
        await _sync(app, full=True)
        changed = await _by_crm_id(app, "crm-acme-00003")
        same = await _by_crm_id(app, "crm-acme-00004")
        crm_url = app.state.hub.upstreams.simulators.urls["crm"]
        headers = {"Authorization": "Bearer sim-dev-key"}
        async with httpx.AsyncClient(base_url=crm_url, headers=headers) as crm:
            edit = {"title": "Changed At The CRM"}
            assert (await crm.post("/_control/contacts/crm-acme-00003", json=edit)).is_success
        # What a running hub sharing this Redis cached of both people.
        cache = create_cache(url, namespace=namespace, local_ttl_s=0)
        keys = {
            row.id: cache_key("crm", "contact", row.crm_id or "", tenant="acme")
            for row in (changed, same)
        }
        try:
            await cache.set_many(
                {key: {"phone": "+48 1"} for key in keys.values()},
                ttl_s=600,
                stale_ttl_s=0,
                tags={key: [subject_tag(contact_id)] for contact_id, key in keys.items()},
            )
            env = {
                **os.environ,
                "HUB_DATABASE_URL": settings.database_url,
                "HUB_POLICIES_DIR": str(settings.policies_dir),
                "HUB_CRM_URL": crm_url,
                "HUB_CACHE_URL": url,
                "HUB_CACHE_NAMESPACE": namespace,
            }
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "hub", "sync", "crm", "--tenant", "acme"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            # Read from Redis itself: a cache that reads starts its purge listener.
            raw = Redis.from_url(url)
            left = {i for i, k in keys.items() if await raw.exists(f"{namespace}:e:{k}")}
            await raw.delete(*[key async for key in raw.scan_iter(match=f"{namespace}:*")])
            await raw.aclose()
        finally:
            await cache.aclose()
        assert (await _by_crm_id(app, "crm-acme-00003")).job_title == "Changed At The CRM"
    assert done.returncode == 0, done.stderr
    assert "shared cache" not in done.stdout
    assert left == {same.id}


async def test_an_erasure_drops_the_persons_queued_write_backs(
    hub: tuple[Starlette, httpx.AsyncClient],
    crm_control: httpx.AsyncClient,
    make_token: MakeToken,
) -> None:
    app, client = hub
    contact = await _by_crm_id(app, "crm-acme-00012")
    other = await _by_crm_id(app, "crm-acme-00013")
    admin = make_token(roles=["admin"])
    for row in (contact, other):
        variables = {"input": {"id": row.id, "fullName": "Queued Name"}}
        _, done = await gql(client, UPSERT, token=admin, variables=variables)
        assert "errors" not in done, done
    assert await _count(app, CrmOutboxRow) == 2
    erase = "mutation($id: ID!) { eraseContact(id: $id) { complete } }"
    _, erased = await gql(
        client, erase, token=make_token(roles=["dpo"]), variables={"id": contact.id}
    )
    assert "errors" not in erased, erased
    # The queued values were the person's: none of them is ever sent; the other's still is.
    assert await _count(app, CrmOutboxRow, col(CrmOutboxRow.contact_id) == contact.id) == 0
    assert await _count(app, CrmOutboxRow, col(CrmOutboxRow.contact_id) == other.id) == 1
    state = app.state.hub
    assert await CrmOutbox(state.store, lambda: state.sources.crm, interval_s=3600).run_once() == 1
    assert (await _record(crm_control, "crm-acme-00013"))["name"] == "Queued Name"
