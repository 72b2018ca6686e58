"""A tenant's whole data from the command line: exported as NDJSON a page at a time, and
deleted for good, erasing every contact as `eraseContact` does, again where a run stopped."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlmodel import col, func, select

from hub.errors import SourceUnavailable
from hub.responses import ANSWERS_TAG
from hub.settings import Settings
from hub.simulators import RunningSimulators, SimulatorConfig, start_simulators
from hub.simulators.config import DEFAULT_API_KEY
from hub.sources.cache import cache_key, create_cache, subject_tag
from hub.sources.crm import CrmRecord
from hub.sources.store import Store
from hub.store.seed import SeedPlan
from hub.store.tables import (
    AuditEventRow,
    CampaignMemberRow,
    CampaignRow,
    ConsentRow,
    ContactRow,
    ErasureRow,
    ErasureTaskRow,
    SyncConflictRow,
    SyncStateRow,
    TenantRow,
)
from hub.tenant_deletion import Holdings, delete_tenant, holdings
from hub.tenant_export import KINDS, export_tenant
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql
from tests.schema.test_privacy import ERASE, _a_contact_with_consent
from tests.test_erasure import UPSERT
from tests.test_tenants import _cli

A, B = "acme", "globex"


@pytest.fixture
async def crm() -> AsyncIterator[RunningSimulators]:
    """The CRM simulator on a port of its own, reached over HTTP."""
    plan = SeedPlan.demo()
    running = await start_simulators(
        {"crm": SimulatorConfig(seed=plan.seed, influencers=plan.influencers)}
    )
    yield running
    await running.stop()


async def _ids(store: Store, tenant: str) -> dict[str, set[str]]:
    """The ids of each kind of row the tenant owns, read from the store."""
    async with store.sessions() as session:

        async def ids(query: Any) -> set[str]:
            return {str(value) for value in (await session.scalars(query)).all()}

        return {
            "tenant": await ids(select(col(TenantRow.id)).where(col(TenantRow.id) == tenant)),
            "campaign": await ids(
                select(col(CampaignRow.id)).where(col(CampaignRow.tenant_id) == tenant)
            ),
            "member": await ids(
                select(col(CampaignMemberRow.id))
                .join(CampaignRow, col(CampaignRow.id) == col(CampaignMemberRow.campaign_id))
                .where(col(CampaignRow.tenant_id) == tenant)
            ),
            "contact": await ids(
                select(col(ContactRow.id)).where(col(ContactRow.tenant_id) == tenant)
            ),
            "consent": await ids(
                select(col(ConsentRow.id)).where(col(ConsentRow.tenant_id) == tenant)
            ),
            "erasure": await ids(
                select(col(ErasureRow.contact_id)).where(col(ErasureRow.tenant_id) == tenant)
            ),
            "audit_event": await ids(
                select(col(AuditEventRow.id)).where(col(AuditEventRow.tenant_id) == tenant)
            ),
        }


def _key(kind: str, record: dict[str, Any]) -> str:
    return str(record["contact_id"] if kind == "erasure" else record["id"])


async def test_an_export_holds_every_row_of_its_tenant_and_none_of_another(
    settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(settings) as (app, client):
        erased = await _a_contact_with_consent(client, make_token)
        _, payload = await gql(
            client, ERASE, token=make_token(roles=["dpo"]), variables={"id": erased}
        )
        assert codes(payload) == [], payload
        await app.state.hub.audit.flush()
        done = await _cli(settings, "export", A)
        store = app.state.hub.store
        expected, other = await _ids(store, A), await _ids(store, B)
    assert done.returncode == 0, done.stderr
    records = [json.loads(text) for text in done.stdout.splitlines()]
    kinds = [record["type"] for record in records]
    assert kinds == sorted(kinds, key=KINDS.index)  # one kind after the other, in KINDS order
    exported: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for record in records:
        exported[record["type"]].append(_key(record["type"], record))
    for kind in KINDS:
        assert set(exported[kind]) == expected[kind], kind
        assert len(exported[kind]) == len(expected[kind]), kind  # each row once
        assert not set(exported[kind]) & other[kind], kind
    # Each kind in id order, as the pages were read.
    assert exported["contact"] == sorted(exported["contact"])
    assert len(expected["contact"]) == 24 and len(expected["campaign"]) > 0
    # The export itself is on the tenant's audit trail, written before its rows were read.
    exports = [
        r for r in records if r["type"] == "audit_event" and r["coordinate"] == "tenant.export"
    ]
    assert [(e["principal"], e["decision"]) for e in exports] == [("cli", "exported")]
    person = next(r for r in records if r["type"] == "contact" and r["id"] == erased)
    assert (person["full_name"], person["email"], person["phone"], person["crm_id"]) == (
        None,
        None,
        None,
        None,
    )
    assert person["erased_at"].endswith("+00:00")
    campaign = next(r for r in records if r["type"] == "campaign" and r["budget_minor"])
    assert isinstance(campaign["budget_minor"], int) and len(campaign["currency"]) == 3
    assert records[0] == {
        "type": "tenant",
        "id": A,
        "name": "Acme Agency",
        "created_at": "2026-01-01T00:00:00+00:00",
        "status": "active",
    }
    assert f"exported tenant {A}: 1 tenant" in done.stderr


async def test_an_export_is_written_a_page_at_a_time(
    sqlite_settings: Settings, tmp_path: Any
) -> None:
    async with running_app(sqlite_settings) as (app, _client):
        store = app.state.hub.store
        chunks: list[str] = []
        counts = await export_tenant(store, B, chunks.append, page_size=7)
        expected = await _ids(store, B)
        unknown = await _cli(sqlite_settings, "export", "nobody")
        into = tmp_path / "globex.ndjson"
        to_file = await _cli(sqlite_settings, "export", B, "--output", str(into))
    assert counts == {kind: len(ids) for kind, ids in expected.items()}
    # One write per page of at most 7 rows: the tenant line, then ceil(n / 7) pages per kind
    # (a kind whose last page is full reads one more, empty, page and writes nothing).
    pages = 1 + sum(-(-len(expected[kind]) // 7) for kind in KINDS[1:])
    assert len(chunks) == pages
    assert all(1 <= chunk.count("\n") <= 7 for chunk in chunks)
    assert max(chunk.count("\n") for chunk in chunks) == 7
    assert (unknown.returncode, unknown.stderr.strip().splitlines()[-1]) == (
        1,
        "hub: no tenant nobody",
    )
    assert to_file.returncode == 0 and to_file.stdout == ""
    written = [json.loads(text) for text in into.read_text().splitlines()]
    assert {r["id"] for r in written if r["type"] == "contact"} == expected["contact"]


async def test_deleting_a_tenant_erases_it_everywhere_and_leaves_the_others(
    settings: Settings, make_token: MakeToken, crm: RunningSimulators
) -> None:
    crm_url = crm.urls["crm"]
    with_crm = {"HUB_CRM_URL": crm_url}
    settings = settings.model_copy(update={"crm_url": crm_url, "tenant_status_ttl_s": 0})
    async with running_app(settings) as (app, client):
        store: Store = app.state.hub.store
        token = make_token(tenant=A)
        assert (await gql(client, "{ tenant { status } }", token=token))[0] == 200
        # A kept answer that names one of A's contacts.
        contact_id = await _a_contact_with_consent(client, make_token)
        kept = await client.post(
            "/graphql",
            json={"query": UPSERT, "variables": {"input": {"id": contact_id, "role": "Agent"}}},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "tenant-key-1"},
        )
        assert kept.status_code == 200 and "errors" not in kept.json(), kept.json()
        held_a, held_b = await holdings(store, A), await holdings(store, B)
        ids_b = await _ids(store, B)
        await app.state.hub.audit.flush()
        audit_a = (await _ids(store, A))["audit_event"]
        async with store.sessions() as session:
            crm_ids: dict[str, list[str]] = {A: [], B: []}
            for row in (await session.scalars(select(ContactRow))).all():
                if row.crm_id and row.tenant_id in crm_ids:
                    crm_ids[row.tenant_id].append(row.crm_id)

        # Where each tenant's CRM sync stands, and a conflict it recorded.
        async with store.sessions.begin() as session:
            for tenant_id in (A, B):
                session.add(SyncStateRow(tenant_id=tenant_id, source="crm", imported=3))
                session.add(
                    SyncConflictRow(
                        tenant_id=tenant_id,
                        contact_id=contact_id,
                        source="crm",
                        field="email",
                        rule="hub",
                        winner="hub",
                        at=datetime.now(UTC),
                    )
                )

        refused = await _cli(settings, "delete", A)
        unchanged = await holdings(store, A)
        _, still_served = await gql(client, "{ tenant { status } }", token=token)
        done = await _cli(settings, "delete", A, "--yes", environment=with_crm)
        status, denied = await gql(client, "{ tenant { status } }", token=token)
        again = await _cli(settings, "delete", A, "--yes", environment=with_crm)
        resumed = await _cli(settings, "resume", A)

        async with store.sessions() as session:
            contacts = (
                await session.scalars(select(ContactRow).where(col(ContactRow.tenant_id) == A))
            ).all()
            tombstones = (
                await session.scalars(select(ErasureRow).where(col(ErasureRow.tenant_id) == A))
            ).all()
            tenant = await session.get_one(TenantRow, A)
            synced = {
                row.tenant_id for row in (await session.scalars(select(SyncStateRow))).all()
            } | {row.tenant_id for row in (await session.scalars(select(SyncConflictRow))).all()}
        after_a, after_b = await holdings(store, A), await holdings(store, B)
        after_ids_b = await _ids(store, B)
        await app.state.hub.audit.flush()
        async with store.sessions() as session:
            audit_after = {
                str(event.id): event.coordinate
                for event in (
                    await session.scalars(
                        select(AuditEventRow).where(col(AuditEventRow.tenant_id) == A)
                    )
                ).all()
            }
        key = {"X-Api-Key": DEFAULT_API_KEY}
        async with httpx.AsyncClient(base_url=crm_url, headers=key) as upstream:
            at_crm = {
                tenant_id: {(await upstream.get(f"/v1/contacts/{i}")).status_code for i in ids}
                for tenant_id, ids in crm_ids.items()
            }

    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"tenant {A} holds 24 contacts to erase (0 erased already), {held_a.campaigns} campaigns, "
        f"{held_a.members} campaign members, {held_a.consents} consents, 1 idempotency keys: "
        "pass --yes to erase and delete them all"
    )
    assert unchanged == held_a and held_a.campaigns > 0 and held_a.members > 0
    assert still_served["data"] == {"tenant": {"status": "ACTIVE"}}
    assert done.returncode == 0, done.stderr
    # The erasure adds a withdrawal to each grant before the consents go.
    deleted_consents = int(done.stdout.splitlines()[4].removeprefix("consents deleted: "))
    assert deleted_consents > held_a.consents
    assert done.stdout.splitlines() == [
        f"tenant {A} is deleted",
        "contacts erased: 24 (0 erased before this run)",
        f"campaigns deleted: {held_a.campaigns}",
        f"campaign members deleted: {held_a.members}",
        f"consents deleted: {deleted_consents}",
        "idempotency keys deleted: 1",
        "CRM sync records deleted: 2",
        "crm: 24 done",
        "discovery: 24 not supported",
        "social: 24 not supported",
        "store: 24 done",
    ]
    # Every contact anonymised, each with its tombstone; nothing else of the tenant is left.
    assert len(contacts) == 24 and {c.id for c in contacts} == {t.contact_id for t in tombstones}
    for contact in contacts:
        values = (contact.full_name, contact.email, contact.phone, contact.crm_id)
        assert values == (None, None, None, None) and contact.erased_at is not None
    assert all(t.crm_hash and t.erased_by == "cli" for t in tombstones)
    assert after_a == Holdings(0, 24, 0, 0, 0, 0)
    assert tenant.status == "deleted"
    # The audit trail stays, with the deletion on it (one event per run).
    assert len(audit_a) > 0 and audit_a <= set(audit_after)
    assert [c for c in audit_after.values() if c == "tenant.delete"] == ["tenant.delete"] * 2
    # The CRM record of A's contacts is gone; B's is still there.
    assert len(crm_ids[A]) == 24 and (at_crm[A], at_crm[B]) == ({404}, {200})
    # B untouched.
    assert (after_b, after_ids_b) == (held_b, ids_b)
    assert synced == {B}
    # A's tokens are refused, saying nothing of what happened.
    assert (status, codes(denied)) == (403, ["FORBIDDEN"])
    assert denied["errors"][0]["message"] == "This tenant's tokens are not accepted."
    # A second run finds nothing left to do.
    assert again.returncode == 0
    assert again.stdout.splitlines()[1:6] == [
        "contacts erased: 0 (24 erased before this run)",
        "campaigns deleted: 0",
        "campaign members deleted: 0",
        "consents deleted: 0",
        "idempotency keys deleted: 0",
    ]
    assert resumed.returncode == 1
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"hub: tenant {A} is deleted: it cannot be suspended or resumed"
    )


class _Crm:
    """A CRM whose deletions fail until `up`; the ids it was asked to delete."""

    def __init__(self) -> None:
        self.up = False
        self.deleted: list[str] = []

    async def contacts(
        self, tenant: str, crm_ids: Sequence[str], *, subjects: Mapping[str, str] | None = None
    ) -> dict[str, CrmRecord]:
        raise AssertionError("a deletion reads nothing from the CRM")

    async def delete(self, crm_id: str, *, tenant: str) -> bool:
        if not self.up:
            raise SourceUnavailable("crm", "The CRM is unavailable.")
        self.deleted.append(crm_id)
        return True


class _Stop(Exception):
    pass


async def test_a_deletion_stopped_halfway_is_finished_by_the_next_run(
    sqlite_settings: Settings,
) -> None:
    async with running_app(sqlite_settings) as (app, _client):
        store: Store = app.state.hub.store
        held_b = await holdings(store, B)
        crm = _Crm()
        purged: list[str] = []

        async def forget_then_stop(subject: str) -> bool:
            purged.append(subject)
            if len(purged) == 10:
                raise _Stop  # the process dies here, halfway through the contacts
            return True

        async def forget(subject: str) -> bool:
            purged.append(subject)
            return True

        with pytest.raises(_Stop):
            await delete_tenant(store, A, crm=crm, forget=forget_then_stop, batch=4)
        halfway = await holdings(store, A)
        first = await delete_tenant(store, A, crm=crm, forget=forget, batch=4)
        async with store.sessions() as session:
            queued = await session.scalar(
                select(func.count())
                .select_from(ErasureTaskRow)
                .where(col(ErasureTaskRow.tenant_id) == A)
            )
        crm.up = True
        second = await delete_tenant(store, A, crm=crm, forget=forget, batch=4)
        async with store.sessions() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(ErasureTaskRow)
                .where(col(ErasureTaskRow.tenant_id) == A)
            )
        after_a, after_b = await holdings(store, A), await holdings(store, B)
    # Stopped after 5 contacts (each purged as itself and as its CRM id).
    assert (halfway.contacts, halfway.erased_contacts) == (19, 5)
    assert halfway.campaigns > 0  # nothing else deleted yet
    assert (first.erased, first.erased_before) == (19, 5)
    assert first.upstream["crm"] == {"FAILED": 24}
    assert "crm: 24 queued for retry" in first.lines()
    assert queued == 24
    assert (second.erased, second.erased_before) == (0, 24)
    assert second.upstream["crm"] == {"ERASED": 24}
    assert sorted(crm.deleted) == [f"crm-{A}-{n:05d}" for n in range(24)]
    assert left == 0
    assert after_a == Holdings(0, 24, 0, 0, 0, 0)
    assert after_b == held_b


async def test_deleting_a_tenant_purges_its_people_from_the_shared_cache(
    sqlite_settings: Settings,
) -> None:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; the shared cache is Redis")
    namespace = f"hub-test-{uuid.uuid4().hex[:8]}"
    async with running_app(sqlite_settings) as (app, _client):
        first = {tenant: await _first_contact(app.state.hub.store, tenant) for tenant in (A, B)}
    # What a running hub would have cached of one contact of each tenant, and a kept answer.
    cache = create_cache(url, namespace=namespace, local_ttl_s=0)
    keys = {t: cache_key("crm", "contact", f"crm-{t}-0", tenant=t) for t in first}
    answer = cache_key("responses", "answer", "some-query", tenant=B)
    try:
        await cache.set_many(
            {keys[A]: {"phone": "+48 1"}, keys[B]: {"phone": "+48 2"}, answer: {"data": 1}},
            ttl_s=600,
            stale_ttl_s=0,
            tags={
                keys[A]: [subject_tag(first[A])],
                keys[B]: [subject_tag(first[B])],
                answer: [ANSWERS_TAG],
            },
        )
        done = await _cli(
            sqlite_settings,
            "delete",
            A,
            "--yes",
            environment={"HUB_CACHE_URL": url, "HUB_CACHE_NAMESPACE": namespace},
        )
        # Read from Redis itself: a cache that reads starts its purge listener.
        raw = Redis.from_url(url)
        left = {k for k in (keys[A], keys[B], answer) if await raw.exists(f"{namespace}:e:{k}")}
        await raw.delete(*[key async for key in raw.scan_iter(match=f"{namespace}:*")])
        await raw.aclose()
    finally:
        await cache.aclose()
    assert done.returncode == 0, done.stderr
    assert "shared cache" not in done.stdout
    assert left == {keys[B]}


async def _first_contact(store: Store, tenant: str) -> str:
    async with store.sessions() as session:
        query = select(col(ContactRow.id)).where(col(ContactRow.tenant_id) == tenant)
        return str(await session.scalar(query.order_by(col(ContactRow.id)).limit(1)))
