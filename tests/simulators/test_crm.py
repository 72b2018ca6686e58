"""The CRM simulator: batch lookup, listing, erasure, and answers fixed by the seed."""

from __future__ import annotations

from typing import Any

import pytest

from hub.simulators import SimulatorConfig, create_crm_app
from hub.simulators.crm import contact_record
from tests.simulators.conftest import OpenClient

DEMO_TENANTS = ("acme", "globex", "initech")


async def _batch(open_client: OpenClient, ids: list[str], *, seed: int = 7) -> Any:
    client = open_client(create_crm_app(SimulatorConfig(seed=seed)))
    response = await client.get("/v1/contacts", params={"ids": ",".join(ids)})
    assert response.status_code == 200
    return response.json()["contacts"]


async def test_batch_lookup_answers_in_request_order_and_leaves_out_malformed_ids(
    open_client: OpenClient,
) -> None:
    ids = ["crm-globex-00042", "not-a-crm-id", "crm-acme-00000", "crm-acme-1"]
    contacts = await _batch(open_client, ids)
    assert [contact["contact_id"] for contact in contacts] == ["crm-globex-00042", "crm-acme-00000"]
    assert [contact["workspace"] for contact in contacts] == ["globex", "acme"]
    first = contacts[0]
    assert set(first) == {
        "contact_id",
        "workspace",
        "name",
        "title",
        "tel",
        "email_address",
        "organisation",
        "updated",
    }
    assert set(first["organisation"]) == {"name", "domain", "size"}
    assert first["email_address"].endswith("@" + first["organisation"]["domain"])
    assert first["tel"].startswith("+48 ")


async def test_every_demo_contact_of_every_demo_tenant_is_known(open_client: OpenClient) -> None:
    for tenant in DEMO_TENANTS:
        ids = [f"crm-{tenant}-{position:05d}" for position in range(100)]
        contacts = await _batch(open_client, ids)
        assert [contact["contact_id"] for contact in contacts] == ids


async def test_any_well_formed_id_is_answered_for_its_tenant(open_client: OpenClient) -> None:
    contacts = await _batch(open_client, ["crm-tenant-7-54321"])
    assert [(c["contact_id"], c["workspace"]) for c in contacts] == [
        ("crm-tenant-7-54321", "tenant-7")
    ]


async def test_the_same_seed_gives_the_same_contacts_and_another_seed_others(
    open_client: OpenClient,
) -> None:
    ids = [f"crm-acme-{position:05d}" for position in range(20)]
    first = await _batch(open_client, ids)
    again = await _batch(open_client, ids)
    other_seed = await _batch(open_client, ids, seed=8)
    assert first == again
    assert first == [contact_record(7, contact_id) for contact_id in ids]
    assert [c["organisation"] for c in first] != [c["organisation"] for c in other_seed]


async def test_a_batch_of_more_than_100_ids_is_refused(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    ids = ",".join(f"crm-acme-{position:05d}" for position in range(101))
    response = await client.get("/v1/contacts", params={"ids": ids})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "at most 100" in response.json()["error"]["message"]


async def _walk(client: Any, params: dict[str, str]) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/contacts", params=query)
        assert response.status_code == 200
        body = response.json()
        seen.extend(contact["contact_id"] for contact in body["contacts"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


async def test_the_listing_walks_every_contact_once_in_id_order(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    seen, pages = await _walk(client, {"limit": "7"})
    expected = sorted(f"crm-{t}-{p:05d}" for t in DEMO_TENANTS for p in range(100))
    assert seen == expected
    assert pages == 43


async def test_the_listing_keeps_to_one_tenant_when_asked(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    seen, _pages = await _walk(client, {"limit": "100", "tenant": "initech"})
    assert seen == [f"crm-initech-{position:05d}" for position in range(100)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cursor": "bm9wZQ"}, "cursor"),
        ({"cursor": "a"}, "cursor"),
        ({"limit": "abc"}, "integer"),
        ({"limit": "0"}, "between 1 and 100"),
        ({"limit": "101"}, "between 1 and 100"),
        ({"ids": " , "}, "at least one"),
        ({"ids": "crm-acme-00001", "limit": "5"}, "cannot be combined"),
    ],
)
async def test_bad_listing_and_batch_parameters_are_refused(
    params: dict[str, str], message: str, open_client: OpenClient
) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    response = await client.get("/v1/contacts", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_a_deleted_contact_is_gone_from_lookups_batches_and_the_listing(
    open_client: OpenClient,
) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    assert (await client.get("/v1/contacts/crm-acme-00003")).status_code == 200
    deleted = await client.delete("/v1/contacts/crm-acme-00003")
    assert deleted.status_code == 204
    assert (await client.get("/v1/contacts/crm-acme-00003")).status_code == 404
    assert (await client.delete("/v1/contacts/crm-acme-00003")).status_code == 404
    batch = await client.get("/v1/contacts", params={"ids": "crm-acme-00002,crm-acme-00003"})
    assert [c["contact_id"] for c in batch.json()["contacts"]] == ["crm-acme-00002"]
    seen, _pages = await _walk(client, {"tenant": "acme", "limit": "30"})
    assert len(seen) == 99
    assert "crm-acme-00003" not in seen
    other = open_client(create_crm_app(SimulatorConfig()))
    assert (await other.get("/v1/contacts/crm-acme-00003")).status_code == 200


async def test_a_malformed_id_is_not_found(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    response = await client.get("/v1/contacts/crm-acme-12")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_listing_of_changes_is_oldest_first_and_only_since_the_time_asked(
    open_client: OpenClient,
) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    everything, _ = await _walk(client, {"limit": "100", "tenant": "acme"})
    since = "2026-06-01T00:00:00Z"  # after every seeded record's `updated`
    assert (await _walk(client, {"tenant": "acme", "updated_since": since}))[0] == []
    for crm_id in ("crm-acme-00042", "crm-acme-00007", "crm-globex-00001"):
        edited = await client.post(f"/_control/contacts/{crm_id}", json={"title": "Edited"})
        assert edited.status_code == 200
    changed, pages = await _walk(client, {"tenant": "acme", "updated_since": since, "limit": "1"})
    assert changed == ["crm-acme-00042", "crm-acme-00007"] and pages == 2
    # Every record, by a time before them all, comes in the order of its change.
    walked, _ = await _walk(client, {"tenant": "acme", "updated_since": "2000-01-01T00:00:00Z"})
    assert sorted(walked) == everything and walked[-2:] == changed
    response = await client.get("/v1/contacts", params={"updated_since": "yesterday"})
    assert response.status_code == 400


async def test_an_update_with_a_key_seen_before_changes_nothing(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    path = "/v1/contacts/crm-acme-00003"
    first = await client.patch(
        path, json={"name": "Ada Keller"}, headers={"Idempotency-Key": "k-1"}
    )
    assert first.status_code == 200 and first.json()["name"] == "Ada Keller"
    again = await client.patch(path, json={"name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert again.json() == first.json()
    assert (await client.get(path)).json()["name"] == "Ada Keller"
    company = await client.patch(path, json={"organisation": {"name": "New Co"}})
    assert company.json()["organisation"]["name"] == "New Co"
    assert company.json()["updated"] > first.json()["updated"]
    refused = await client.patch(path, json={"workspace": "globex"})
    assert refused.status_code == 400
    assert (await client.get(path)).json()["workspace"] == "acme"
    missing = await client.patch("/v1/contacts/crm-acme-99999-x", json={"name": "x"})
    assert missing.status_code == 404
