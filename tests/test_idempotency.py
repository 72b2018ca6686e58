"""`Idempotency-Key`: the same key and body return the first answer and apply once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from hub.settings import Settings
from hub.store.tables import IdempotencyRow
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

CREATE = """mutation ($name: String!) {
  createCampaign(input: {name: $name, brand: "Brand"}) { id name } }"""
COUNT = "{ campaigns(first: 100) { totalCount } }"


async def _create(client: httpx.AsyncClient, token: str, key: str, name: str) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": CREATE, "variables": {"name": name}},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


async def _count(client: httpx.AsyncClient, token: str) -> int:
    _, payload = await gql(client, COUNT, token=token)
    total: int = payload["data"]["campaigns"]["totalCount"]
    return total


async def test_a_repeated_key_returns_the_first_answer_and_applies_once(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    first = await _create(client, token, "key-1", "Once")
    second = await _create(client, token, "key-1", "Once")
    assert first.status_code == second.status_code == 200
    created: dict[str, Any] = first.json()["data"]["createCampaign"]
    assert second.json()["data"]["createCampaign"] == created
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.json()["extensions"]["requestId"] == second.headers["x-request-id"]
    assert await _count(client, token) == 7


async def test_concurrent_requests_with_one_key_apply_once(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    responses = await asyncio.gather(*(_create(client, token, "burst", "Burst") for _ in range(8)))
    ids = {response.json()["data"]["createCampaign"]["id"] for response in responses}
    assert len(ids) == 1
    assert await _count(client, token) == 7


async def test_a_key_reused_with_another_body_is_refused(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    await _create(client, token, "key-2", "First")
    clash = await _create(client, token, "key-2", "Second")
    assert clash.status_code == 409
    assert codes(clash.json()) == ["IDEMPOTENCY_CONFLICT"]
    assert await _count(client, token) == 7


async def test_keys_of_different_callers_never_meet(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    acme, globex = make_token(tenant="acme"), make_token(tenant="globex")
    one = await _create(client, acme, "shared-key", "Same")
    other = await _create(client, globex, "shared-key", "Same")
    assert (
        one.json()["data"]["createCampaign"]["id"] != other.json()["data"]["createCampaign"]["id"]
    )
    assert await _count(client, acme) == 7 and await _count(client, globex) == 7


async def test_a_refused_first_attempt_is_replayed_as_refused(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    first = await _create(client, token, "key-3", " ")
    second = await _create(client, token, "key-3", " ")
    assert codes(first.json()) == codes(second.json()) == ["BAD_USER_INPUT"]
    assert second.headers["idempotent-replayed"] == "true"


async def test_a_malformed_key_is_a_bad_request(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    response = await _create(client, make_token(), "spaces are not allowed", "X")
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    assert await _count(client, make_token()) == 6


async def test_a_replayed_answer_never_carries_personal_data(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    mutation = """mutation ($id: ID!) { upsertContact(input: {id: $id, role: "agent"}) {
      id role email } }"""
    _, listing = await gql(
        client,
        "{ influencers(first: 100) { edges { node { contacts { id email } } } } }",
        token=token,
    )
    contact_id = next(
        c["id"]
        for e in listing["data"]["influencers"]["edges"]
        for c in e["node"]["contacts"]
        if c["email"] and "***" not in c["email"]
    )
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "personal-1"}
    body = {"query": mutation, "variables": {"id": contact_id}}
    first = await client.post("/graphql", json=body, headers=headers)
    replay = await client.post("/graphql", json=body, headers=headers)
    assert "@" in first.json()["data"]["upsertContact"]["email"]
    assert replay.json()["data"]["upsertContact"] == {
        "id": contact_id,
        "role": "agent",
        "email": None,
    }
    assert replay.json()["extensions"]["personalDataOmitted"] is True
    assert "@" not in replay.text


async def test_a_key_older_than_its_ttl_runs_again(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"idempotency_ttl_s": 60})
    token = make_token()
    async with running_app(settings) as (app, client):
        first = await _create(client, token, "old-key", "Once")
        async with app.state.hub.store.sessions.begin() as session:
            await session.execute(
                update(IdempotencyRow).values(created_at=datetime.now(UTC) - timedelta(hours=1))
            )
        second = await _create(client, token, "old-key", "Once")
        total = await _count(client, token)
    assert "idempotent-replayed" not in second.headers
    assert (
        second.json()["data"]["createCampaign"]["id"]
        != first.json()["data"]["createCampaign"]["id"]
    )
    assert total == 8
