"""The data subject's rights: access log, export and erasure."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from hub.erasure import ErasureRetrier
from hub.resolvers.privacy import EXPORTED
from hub.schema.access import schema_coordinates
from hub.schema.pagination import opaque
from hub.schema.root import build_schema
from hub.settings import Settings
from hub.store.leases import Leases
from tests.conftest import ROOT, MakeToken, running_app
from tests.helpers import codes, fill_audit_buffer, gql, refusing_audit_writes

LOG = """query ($id: ID!, $after: String) { personalDataAccessLog(contactId: $id, first: 2,
  after: $after) { totalCount pageInfo { hasNextPage endCursor }
  edges { node { principal clientId purpose coordinate decision } } } }"""
ERASE = """mutation ($id: ID!) { eraseContact(id: $id) { contactId complete
  sources { source status reason } } }"""


async def _a_contact_with_consent(client: httpx.AsyncClient, make_token: MakeToken) -> str:
    query = "{ influencers(first: 100) { edges { node { contacts { id email } } } } }"
    _, payload = await gql(client, query, token=make_token())
    consented: list[str] = [
        contact["id"]
        for edge in payload["data"]["influencers"]["edges"]
        for contact in edge["node"]["contacts"]
        if contact["email"] and "***" not in contact["email"]
    ]
    return consented[0]


async def test_the_dpo_reads_who_saw_a_persons_data_page_by_page(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _a_contact_with_consent(sqlite_client, make_token)
    reader = make_token(subject="reader-1", client_id="crm-ui")
    await gql(sqlite_client, f'{{ contact(id: "{contact_id}") {{ email phone }} }}', token=reader)
    dpo = make_token(roles=["dpo"], subject="dpo-1")
    nodes: list[dict[str, str]] = []
    after = None
    while True:
        _, payload = await gql(
            sqlite_client, LOG, token=dpo, variables={"id": contact_id, "after": after}
        )
        log = payload["data"]["personalDataAccessLog"]
        nodes.extend(edge["node"] for edge in log["edges"])
        if not log["pageInfo"]["hasNextPage"]:
            break
        after = log["pageInfo"]["endCursor"]
    # Read once while finding the contact (email), then by reader-1 (email and phone).
    assert len(nodes) == log["totalCount"] == 3
    assert {
        "principal": "reader-1",
        "clientId": "crm-ui",
        "purpose": "campaign_management",
        "coordinate": "Contact.email",
        "decision": "allowed",
    } in nodes
    _, refused = await gql(sqlite_client, LOG, token=make_token(), variables={"id": contact_id})
    assert codes(refused) == ["FORBIDDEN"]


async def test_the_export_holds_data_consents_and_log_and_is_audited(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _a_contact_with_consent(sqlite_client, make_token)
    dpo = make_token(roles=["dpo"], subject="dpo-2")
    query = f'{{ exportContactData(id: "{contact_id}") }}'
    _, payload = await gql(sqlite_client, query, token=dpo)
    export = payload["data"]["exportContactData"]
    assert export["contact"]["id"] == contact_id
    assert "@" in export["contact"]["email"]
    assert export["consents"] and all(c["contact_id"] == contact_id for c in export["consents"])
    assert any(e["coordinate"] == "Contact.email" for e in export["accessLog"])
    # The CRM's own copy of the person, read from the CRM and attributed to it.
    crm_copy = export["crm"]
    assert crm_copy["source"] == "crm" and crm_copy["crmId"] == export["contact"]["crm_id"]
    record = crm_copy["record"]
    assert set(record) == {"fullName", "email", "phone", "company", "jobTitle", "updatedAt"}
    assert "@" in record["email"] and record["email"] != export["contact"]["email"]
    _, again = await gql(sqlite_client, query, token=dpo)
    exported = [
        e for e in again["data"]["exportContactData"]["accessLog"] if e["decision"] == "exported"
    ]
    assert {e["coordinate"] for e in exported} == {
        "Query.exportContactData.full_name",
        "Query.exportContactData.email",
        "Query.exportContactData.phone",
        "Query.exportContactData.crm.fullName",
        "Query.exportContactData.crm.email",
        "Query.exportContactData.crm.phone",
        "Query.exportContactData.crm.jobTitle",
    }


async def test_a_dpo_token_narrowed_to_other_scopes_neither_exports_nor_erases(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _a_contact_with_consent(sqlite_client, make_token)
    narrowed = make_token(roles=["dpo"], scopes=["influencers:read"], subject="dpo-narrow")
    export = f'{{ exportContactData(id: "{contact_id}") }}'
    _, exported = await gql(sqlite_client, export, token=narrowed)
    _, logged = await gql(sqlite_client, LOG, token=narrowed, variables={"id": contact_id})
    _, erased = await gql(sqlite_client, ERASE, token=narrowed, variables={"id": contact_id})
    _, still = await gql(
        sqlite_client, f'{{ contact(id: "{contact_id}") {{ email }} }}', token=make_token()
    )
    assert exported["data"] is None
    assert codes(exported) == ["FORBIDDEN"] and "@" not in str(exported)
    assert codes(logged) == ["FORBIDDEN"] and logged["data"] is None
    assert codes(erased) == ["FORBIDDEN"] and not erased.get("data")
    assert "@" in still["data"]["contact"]["email"]
    scoped = make_token(roles=["dpo"], scopes=["contacts:read", "influencers:read", "audit:read"])
    _, allowed = await gql(sqlite_client, export, token=scoped)
    assert allowed["data"]["exportContactData"]["contact"]["id"] == contact_id


async def test_the_export_is_refused_when_any_part_of_it_is_a_field_the_caller_may_not_read(
    tmp_path: Path, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    access = policies / "access.yaml"
    access.write_text(
        access.read_text().replace(
            "  Consent: contacts:read\n",
            "  Consent: contacts:read\n  Consent.evidence: [role:admin, contacts:read]\n",
        )
    )
    settings = sqlite_settings.model_copy(update={"policies_dir": policies})
    async with running_app(settings) as (_app, client):
        contact_id = await _a_contact_with_consent(client, make_token)
        grant = """mutation ($id: ID!) { grantConsent(contactId: $id, purpose: "analytics",
          source: "call", evidence: "recorded call with Ola Nowak") { id } }"""
        _, granted = await gql(client, grant, token=make_token(), variables={"id": contact_id})
        assert codes(granted) == []
        query = f'{{ exportContactData(id: "{contact_id}") }}'
        _, dpo = await gql(client, query, token=make_token(roles=["dpo"]))
        _, both = await gql(client, query, token=make_token(roles=["dpo", "admin"]))
    assert dpo["data"] is None
    assert codes(dpo) == ["FORBIDDEN"]
    assert dpo["errors"][0]["extensions"]["coordinates"] == ["Consent.evidence"]
    assert "Ola Nowak" not in str(dpo)
    evidence = [c["evidence"] for c in both["data"]["exportContactData"]["consents"]]
    assert "recorded call with Ola Nowak" in evidence


def test_every_part_of_the_export_is_ruled_by_a_field_of_the_schema() -> None:
    types = schema_coordinates(build_schema(Settings())._schema)
    assert all(field in types[type_name] for type_name, field in EXPORTED)
    assert {type_name for type_name, _ in EXPORTED} == {
        "Contact",
        "Influencer",
        "Consent",
        "AccessEvent",
    }


async def test_erasure_leaves_no_personal_data_and_keeps_a_pseudonymous_log(
    tmp_path: Path, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        contact_id = await _a_contact_with_consent(client, make_token)
        manager = make_token()
        _, before = await gql(
            client, f'{{ contact(id: "{contact_id}") {{ email }} }}', token=manager
        )
        email = before["data"]["contact"]["email"]
        _, refused = await gql(client, ERASE, token=manager, variables={"id": contact_id})
        assert codes(refused) == ["FORBIDDEN"]
        dpo = make_token(roles=["dpo"], subject="dpo-3")
        _, erased = await gql(client, ERASE, token=dpo, variables={"id": contact_id})
        report = erased["data"]["eraseContact"]
        statuses = {s["source"]: s["status"] for s in report["sources"]}
        assert statuses["store"] == "ERASED"
        assert statuses["social"] == statuses["discovery"] == "NOT_SUPPORTED"
        query = f'{{ contact(id: "{contact_id}") {{ fullName email phone role company }} }}'
        _, after = await gql(client, query, token=manager)
        assert after["data"]["contact"] == {
            "fullName": None,
            "email": None,
            "phone": None,
            "role": None,
            "company": None,
        }
        upsert = """mutation ($e: String!) { upsertContact(input: {email: $e}) { id } }"""
        _, again = await gql(client, upsert, token=manager, variables={"e": email.upper()})
        assert codes(again) == ["BAD_USER_INPUT"]
        _, log = await gql(client, LOG, token=dpo, variables={"id": contact_id})
        assert log["data"]["personalDataAccessLog"]["totalCount"] >= 1
        await app.state.hub.audit.flush()
    database = str(sqlite_settings.database_url).removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as db:
        dumped = "\n".join(db.iterdump())
        subjects = {s for (s,) in db.execute("select distinct subject from audit_events")}
    assert email.lower() not in dumped.lower()
    assert contact_id not in subjects
    assert any(s and s.startswith("erased:") for s in subjects)


async def _crm_contact(client: httpx.AsyncClient, make_token: MakeToken) -> tuple[str, str]:
    """A demo contact with consent and its CRM id (read from the store)."""
    contact_id = await _a_contact_with_consent(client, make_token)
    dpo = make_token(roles=["dpo"])
    _, export = await gql(client, f'{{ exportContactData(id: "{contact_id}") }}', token=dpo)
    crm_id: str = export["data"]["exportContactData"]["contact"]["crm_id"]
    return contact_id, crm_id


async def test_erasure_deletes_the_crm_copy_and_retries_a_failed_deletion(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        crm_url = app.state.hub.upstreams.simulators.urls["crm"]
        headers = {"Authorization": "Bearer sim-dev-key"}
        async with httpx.AsyncClient(base_url=crm_url, headers=headers) as crm:
            contact_id, crm_id = await _crm_contact(client, make_token)
            assert (await crm.get(f"/v1/contacts/{crm_id}")).status_code == 200
            await crm.post("/_control/fault", json={"mode": "down"})
            dpo = make_token(roles=["dpo"], subject="dpo-4")
            _, first = await gql(client, ERASE, token=dpo, variables={"id": contact_id})
            crm_entry = next(
                s for s in first["data"]["eraseContact"]["sources"] if s["source"] == "crm"
            )
            assert crm_entry["status"] == "FAILED" and "crm" in crm_entry["reason"]
            assert first["data"]["eraseContact"]["complete"] is False
            await crm.post("/_control/fault", json={"mode": "none"})
            assert (await crm.get(f"/v1/contacts/{crm_id}")).status_code == 200
            retrier = ErasureRetrier(
                app.state.hub.store,
                lambda: app.state.hub.sources.crm,
                clock=lambda: datetime.now(UTC) + timedelta(hours=1),
            )
            assert await retrier.run_once() == 1
            assert (await crm.get(f"/v1/contacts/{crm_id}")).status_code == 404
            query = (
                f'{{ erasureReport(contactId: "{contact_id}") '
                "{ complete sources { source status } } }"
            )
            _, report = await gql(client, query, token=dpo)
            assert report["data"]["erasureReport"]["complete"] is True
            assert {"source": "crm", "status": "ERASED"} in report["data"]["erasureReport"][
                "sources"
            ]
            assert await retrier.run_once() == 0


async def test_one_replica_at_a_time_retries_the_failed_erasures(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        hub = app.state.hub
        crm_url = hub.upstreams.simulators.urls["crm"]
        headers = {"Authorization": "Bearer sim-dev-key"}
        async with httpx.AsyncClient(base_url=crm_url, headers=headers) as crm:
            contact_id, crm_id = await _crm_contact(client, make_token)
            await crm.post("/_control/fault", json={"mode": "down"})
            dpo = make_token(roles=["dpo"], subject="dpo-5")
            await gql(client, ERASE, token=dpo, variables={"id": contact_id})
            await crm.post("/_control/fault", json={"mode": "none"})
            replicas = [
                ErasureRetrier(
                    hub.store,
                    lambda: hub.sources.crm,
                    clock=lambda: datetime.now(UTC) + timedelta(hours=1),
                    leases=Leases(hub.store.sessions, holder=name),
                )
                for name in ("replica-a", "replica-b")
            ]
            rounds = [await replica.run_leased() for replica in replicas]
            assert rounds == [1, None]
            assert (await crm.get(f"/v1/contacts/{crm_id}")).status_code == 404
            assert [await replica.run_leased() for replica in reversed(replicas)] == [None, 0]
            await replicas[0].aclose()
            assert await replicas[1].run_leased() == 0  # released: the other takes it


async def test_an_erased_person_cannot_be_written_again_by_id_or_read_by_the_admin(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _a_contact_with_consent(sqlite_client, make_token)
    dpo = make_token(roles=["dpo"])
    results = await asyncio.gather(
        *(gql(sqlite_client, ERASE, token=dpo, variables={"id": contact_id}) for _ in range(3))
    )
    assert [status for status, _ in results] == [200, 200, 200]
    assert all(codes(payload) == [] for _, payload in results)
    again = """mutation ($id: ID!) { upsertContact(input: {id: $id, fullName: "Back Again",
      phone: "+48 600 000 000"}) { id } }"""
    _, payload = await gql(sqlite_client, again, token=make_token(), variables={"id": contact_id})
    assert codes(payload) == ["NOT_FOUND"]
    query = f'{{ contact(id: "{contact_id}") {{ fullName phone consents {{ status }} }} }}'
    _, read = await gql(sqlite_client, query, token=make_token())
    assert read["data"]["contact"]["fullName"] is None
    assert read["data"]["contact"]["consents"][-1]["status"] == "WITHDRAWN"
    admin = make_token(roles=["admin"], purpose="analytics")
    _, export = await gql(
        sqlite_client, f'{{ exportContactData(id: "{contact_id}") }}', token=admin
    )
    assert codes(export) == ["FORBIDDEN"]


async def test_erasure_never_deletes_another_workspaces_crm_record(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        crm_url = app.state.hub.upstreams.simulators.urls["crm"]
        manager = make_token()
        create = """mutation { upsertContact(input: {email: "taken@example.com",
          crmId: "crm-globex-00021"}) { id } }"""
        _, created = await gql(client, create, token=manager)
        contact_id = created["data"]["upsertContact"]["id"]
        _, erased = await gql(
            client, ERASE, token=make_token(roles=["dpo"]), variables={"id": contact_id}
        )
        crm_entry = next(
            s for s in erased["data"]["eraseContact"]["sources"] if s["source"] == "crm"
        )
        async with httpx.AsyncClient(
            base_url=crm_url, headers={"Authorization": "Bearer sim-dev-key"}
        ) as crm:
            still_there = await crm.get("/v1/contacts/crm-globex-00021")
    assert crm_entry["status"] == "NOT_SUPPORTED"
    assert "another workspace" in crm_entry["reason"]
    assert still_there.status_code == 200


async def test_the_export_is_refused_while_the_audit_trail_cannot_keep_its_events(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"audit_buffer_max_events": 10})
    async with running_app(settings) as (app, client):
        hub = app.state.hub
        contact_id = await _a_contact_with_consent(client, make_token)
        query = f'{{ exportContactData(id: "{contact_id}") }}'
        dpo = make_token(roles=["dpo"], subject="dpo-full")
        async with refusing_audit_writes(hub.engine):
            fill_audit_buffer(hub.audit)
            _, refused = await gql(client, query, token=dpo)
        assert refused["data"] is None  # exportContactData is non-null
        assert codes(refused) == ["SOURCE_UNAVAILABLE"]
        assert refused["errors"][0]["extensions"]["source"] == "audit"
        assert "@" not in str(refused)
        await hub.audit.flush()
        _, exported = await gql(client, query, token=dpo)
    assert exported["data"]["exportContactData"]["contact"]["id"] == contact_id


async def test_an_access_log_cursor_that_is_no_row_number_is_bad_user_input(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    contact_id = await _a_contact_with_consent(client, make_token)
    dpo = make_token(roles=["dpo"], subject="dpo-1")
    for text in ("v1:n:2147483648", "v1:n:\u00b2", "v1:n:" + "9" * 5000):
        after = opaque(text)
        _, payload = await gql(client, LOG, token=dpo, variables={"id": contact_id, "after": after})
        assert codes(payload) == ["BAD_USER_INPUT"], (text, payload)
        assert payload["errors"][0]["extensions"]["argument"] == "after"
