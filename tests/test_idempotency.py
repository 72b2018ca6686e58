"""`Idempotency-Key`: the same key and body return the first answer and apply once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from hub.auth import Principal
from hub.errors import IdempotencyConflict
from hub.idempotency import ERASED_ANSWER, IdempotencyKeys, StoredAnswer, scoped_key
from hub.settings import Settings
from hub.sources.store import Store
from hub.store.tables import ErasureRow, IdempotencyRow
from hub.store.tenancy import SYSTEM, bind_tenant, current_binding
from tests.conftest import TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, gql
from tests.test_cost_budget import _policies_with_tight_tier

CREATE = """mutation ($name: String!) {
  createCampaign(input: {name: $name, brand: "Brand"}) { id name } }"""
COUNT = "{ campaigns(first: 100) { totalCount } }"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


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


@pytest.fixture
def tight_settings(tmp_path: Path, sqlite_settings: Settings) -> Settings:
    """Client `tight`: 100 points, refilled at 0.01 a second."""
    return sqlite_settings.model_copy(update={"policies_dir": _policies_with_tight_tier(tmp_path)})


async def test_a_throttled_first_attempt_is_not_kept_and_its_retry_runs(
    tight_settings: Settings, make_token: MakeToken
) -> None:
    token = make_token(client_id="tight")
    async with running_app(tight_settings) as (app, client):
        while (await gql(client, COUNT, token=token))[0] != 429:
            pass  # drain the client's 100 points
        throttled = await _create(client, token, "after-429", "Later")
        await app.state.hub.bucket.refund("tight", 100, size=100, restore_rate_per_s=0.01)
        retried = await _create(client, token, "after-429", "Later")
        total = await _count(client, make_token())
    assert throttled.status_code == 429 and codes(throttled.json()) == ["THROTTLED"]
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert retried.json()["data"]["createCampaign"]["id"].startswith("cmp_")
    assert total == 7


async def test_a_mutation_over_get_leaves_no_claim_behind(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "get-first"}
    refused = await client.get(
        "/graphql", params={"query": CREATE, "variables": '{"name": "Get"}'}, headers=headers
    )
    started = asyncio.get_running_loop().time()
    posted = await _create(client, token, "get-first", "Get")
    waited = asyncio.get_running_loop().time() - started
    assert refused.status_code == 405
    assert posted.status_code == 200 and "idempotent-replayed" not in posted.headers
    assert waited < 5  # not the ten seconds a claim left behind makes it wait
    assert await _count(client, token) == 7


async def test_callers_without_a_subject_keep_their_keys_apart(
    client: httpx.AsyncClient,
) -> None:
    def service(client_id: str) -> str:
        claims = {
            "iss": "influencer-hub",
            "aud": "influencer-hub",
            "tenant": "acme",
            "roles": ["manager"],
            "client_id": client_id,
            "exp": int(time.time()) + 600,
        }
        return jwt.encode(claims, TEST_SECRET, algorithm="HS256")

    one = await _create(client, service("importer"), "nightly", "Same")
    other = await _create(client, service("exporter"), "nightly", "Same")
    assert "idempotent-replayed" not in other.headers
    assert (
        one.json()["data"]["createCampaign"]["id"] != other.json()["data"]["createCampaign"]["id"]
    )


def test_keys_of_callers_whose_claims_share_a_separator_never_meet() -> None:
    def principal(tenant: str, subject: str) -> Principal:
        return Principal(subject, tenant, frozenset(), frozenset(), None, None, subject)

    assert scoped_key("k", principal("a|b", "c")) != scoped_key("k", principal("a", "b|c"))


async def test_a_replay_is_charged_like_any_request(
    tight_settings: Settings, make_token: MakeToken
) -> None:
    token = make_token(client_id="tight")
    async with running_app(tight_settings) as (_app, client):
        first = await _create(client, token, "charged", "Charged")
        replay = await _create(client, token, "charged", "Charged")
    charged = [response.json()["extensions"]["cost"] for response in (first, replay)]
    assert replay.headers["idempotent-replayed"] == "true"
    assert charged[1]["requestedQueryCost"] == charged[1]["actualQueryCost"] == 10
    # The tier restores 0.01 points a second: 100 - 10 - 10.
    assert [cost["throttleStatus"]["currentlyAvailable"] for cost in charged] == [90, 80]


async def test_waiters_on_one_key_are_bounded(sqlite_settings: Settings) -> None:
    async with running_app(sqlite_settings) as (app, _client):
        keys = IdempotencyKeys(app.state.hub.store, ttl_s=60, wait_s=2, max_waiters=2)
        assert await keys.claim("busy", "digest") is None  # the first request, still running
        waiters = [asyncio.create_task(keys.claim("busy", "digest")) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(IdempotencyConflict, match="Too many requests"):
            await keys.claim("busy", "digest")
        await keys.finish("busy", "digest", StoredAnswer(200, {"data": {"ok": True}}), subjects=())
        answers = await asyncio.gather(*waiters)
    assert [answer.body if answer else None for answer in answers] == [{"data": {"ok": True}}] * 2


async def test_an_erasure_reaches_the_answers_kept_for_replays(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    manager = make_token()
    contact_id = await _a_contact(client, manager)
    upsert = {
        "query": 'mutation ($id: ID!) { upsertContact(input: {id: $id, role: "Head of talent", '
        'company: "Glow Labs"}) { id role company } }',
        "variables": {"id": contact_id},
    }
    grant = {
        "query": 'mutation ($id: ID!) { grantConsent(contactId: $id, purpose: "analytics", '
        'source: "call with Ann", evidence: "Ann said yes on 2 Dec") { purpose evidence } }',
        "variables": {"id": contact_id},
    }
    headers = {"Authorization": f"Bearer {manager}"}
    before = [
        await client.post("/graphql", json=body, headers={**headers, "Idempotency-Key": key})
        for key, body in (("upsert-1", upsert), ("grant-1", grant))
    ]
    dpo = make_token(roles=["dpo"], purpose=None)
    erased = await gql(
        client, f'mutation {{ eraseContact(id: "{contact_id}") {{ contactId }} }}', token=dpo
    )
    after = [
        await client.post("/graphql", json=body, headers={**headers, "Idempotency-Key": key})
        for key, body in (("upsert-1", upsert), ("grant-1", grant))
    ]
    assert erased[1]["data"]["eraseContact"]["contactId"] == contact_id
    assert before[0].json()["data"]["upsertContact"]["company"] == "Glow Labs"
    assert before[1].json()["data"]["grantConsent"]["purpose"] == "analytics"
    for replay in after:
        assert replay.headers["idempotent-replayed"] == "true"
        assert codes(replay.json()) == ["NOT_FOUND"] and replay.json()["data"] is None
        assert "Glow Labs" not in replay.text and "Ann" not in replay.text


async def _a_contact(client: httpx.AsyncClient, token: str) -> str:
    _, listing = await gql(
        client, "{ influencers(first: 100) { edges { node { contacts { id } } } } }", token=token
    )
    contact_id: str = next(
        c["id"] for e in listing["data"]["influencers"]["edges"] for c in e["node"]["contacts"]
    )
    return contact_id


async def test_a_key_whose_mutation_wrote_something_is_kept_though_a_later_field_failed(
    client: httpx.AsyncClient, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token()
    insert = Store.insert
    calls = 0

    async def second_insert_fails(self: Store, row: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the store went away")
        await insert(self, row)

    monkeypatch.setattr(Store, "insert", second_insert_fails)
    document = """mutation {
      a: createCampaign(input: {name: "A", brand: "b"}) { id }
      b: createCampaign(input: {name: "B", brand: "b"}) { id } }"""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "half-done"}
    first = await client.post("/graphql", json={"query": document}, headers=headers)
    assert await _count(client, token) == 7  # `a` was written, `b` failed
    again = await client.post("/graphql", json={"query": document}, headers=headers)
    assert codes(first.json()) == ["INTERNAL_SERVER_ERROR"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]
    assert calls == 2  # the retry wrote nothing
    assert await _count(client, token) == 7


def store_away_for(monkeypatch: pytest.MonkeyPatch, *, writes: int) -> list[str]:
    """`IdempotencyKeys._write` fails for its first `writes` calls (the store gone a
    moment); the keys it refused, in order."""
    write = IdempotencyKeys._write
    refused: list[str] = []

    async def flaky(self: IdempotencyKeys, key: str, *args: Any) -> None:
        if len(refused) < writes:
            refused.append(key)
            raise ConnectionError("the store went away")
        await write(self, key, *args)

    monkeypatch.setattr(IdempotencyKeys, "_write", flaky)
    return refused


async def test_an_answer_the_store_did_not_take_is_held_and_never_applied_twice(
    sqlite_settings: Settings, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token()
    refused = store_away_for(monkeypatch, writes=1)
    async with running_app(sqlite_settings) as (app, client):
        keys = app.state.hub.idempotency
        keys.retry_s = 3600.0  # held, not yet written again
        first = await _create(client, token, "held", "Once")
        # The mutation was applied: its caller gets its answer.
        assert first.status_code == 200 and "errors" not in first.json()
        created = first.json()["data"]["createCampaign"]
        # A minute later, the claim would look abandoned to anyone reading the store.
        async with app.state.hub.store.sessions.begin() as session:
            await session.execute(
                update(IdempotencyRow).values(created_at=datetime.now(UTC) - timedelta(minutes=2))
            )
        again = await _create(client, token, "held", "Once")
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["data"]["createCampaign"] == created
        assert await _count(client, token) == 7
        # Written again once the store takes it: another replica replays it from the store.
        await keys._write_held()
        assert keys._held == {}
        other = IdempotencyKeys(app.state.hub.store, ttl_s=3600)
        async with app.state.hub.store.sessions() as session:
            row = (await session.scalars(select(IdempotencyRow))).one()
        stored = await other.claim(row.key, row.request_hash)
    assert stored is not None and stored.body["data"]["createCampaign"] == created
    assert len(refused) == 1


async def _claimed(keys: IdempotencyKeys, key: str, digest: str) -> None:
    assert await keys.claim(key, digest) is None


async def test_held_answers_are_written_in_system_mode_each_on_its_own(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer that retries held answers is started by one tenant's request and writes
    every tenant's answers: it must not run bound to that tenant (whose row security would
    hide another tenant's erasures). A held answer that keeps failing does not hold back
    the others."""
    write = IdempotencyKeys._write
    bindings: list[Any] = []
    store_away = True

    async def flaky(self: IdempotencyKeys, key: str, *args: Any) -> None:
        bindings.append(current_binding())
        if store_away or key == "poisoned":
            raise ConnectionError("the store went away")
        await write(self, key, *args)

    monkeypatch.setattr(IdempotencyKeys, "_write", flaky)
    async with running_app(sqlite_settings) as (app, _client):
        keys = IdempotencyKeys(app.state.hub.store, ttl_s=3600, retry_s=3600)
        for key in ("poisoned", "fine"):
            await _claimed(keys, key, "digest")

        async def request_of_acme(key: str) -> None:
            bind_tenant("acme")
            await keys.finish(key, "digest", StoredAnswer(200, {"data": {key: 1}}), subjects=())

        for key in ("poisoned", "fine"):
            await asyncio.create_task(request_of_acme(key))
        assert [binding.tenant for binding in bindings] == ["acme", "acme"]
        store_away = False
        bindings.clear()
        await keys._write_held()
        assert bindings == [SYSTEM, SYSTEM]
        assert list(keys._held) == ["poisoned"]  # tried, failed, kept for the next round
        async with app.state.hub.store.sessions() as session:
            kept = {row.key: row.response for row in await session.scalars(select(IdempotencyRow))}
        await keys.aclose()
    assert kept["fine"] == {"status": 200, "body": {"data": {"fine": 1}}}
    assert kept["poisoned"] is None


async def test_a_held_answer_neither_outlives_an_erasure_nor_overwrites_a_newer_claim(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_away_for(monkeypatch, writes=2)
    async with running_app(sqlite_settings) as (app, _client):
        store = app.state.hub.store
        keys = IdempotencyKeys(store, ttl_s=3600, retry_s=3600)
        await _claimed(keys, "named", "digest")
        answer = StoredAnswer(200, {"data": {"contact": {"id": "con_gone"}}})
        await keys.finish("named", "digest", answer, subjects=["con_gone"])
        assert await keys.claim("named", "digest") == answer  # held, replayed
        async with store.sessions.begin() as session:
            session.add(ErasureRow(contact_id="con_gone", tenant_id="acme", erased_at=NOW))
        replay = await keys.claim("named", "digest")
        assert replay is not None and replay.body == ERASED_ANSWER["body"]
        # Another request made the key anew (its claim forgotten, say) with another body: the
        # late write of the held answer does not become that request's answer.
        await _claimed(keys, "reused", "first")
        await keys.finish("reused", "first", StoredAnswer(200, {"data": 1}), subjects=())
        async with store.sessions.begin() as session:
            await session.execute(
                update(IdempotencyRow)
                .where(col(IdempotencyRow.key) == "reused")
                .values(request_hash="second")
            )
        await keys._write_held()
        async with store.sessions() as session:
            kept = {row.key: row.response for row in await session.scalars(select(IdempotencyRow))}
    assert kept["reused"] is None
    assert kept["named"] == ERASED_ANSWER
