"""Automatic persisted queries (Apollo's protocol) and the trusted-documents manifest."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx

from hub.persisted import MemoryQueryStore, RedisQueryStore, create_query_store
from tests.conftest import ROOT, MakeToken
from tests.helpers import codes
from tests.redis_server import running_redis

QUERY = "{ campaigns(first: 2) { totalCount } }"
DIGEST = hashlib.sha256(QUERY.encode()).hexdigest()
MANIFEST = json.loads((ROOT / "policies" / "trusted-documents.json").read_text())
TRUSTED = {op["name"]: op for op in MANIFEST["operations"]}


def _persisted(digest: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def _post(client: httpx.AsyncClient, token: str, body: dict[str, object]) -> httpx.Response:
    return await client.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})


async def test_a_hash_alone_is_unknown_until_registered_with_its_query(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    unknown = await _post(sqlite_client, token, {"extensions": _persisted(DIGEST)})
    assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    registered = await _post(
        sqlite_client, token, {"query": QUERY, "extensions": _persisted(DIGEST)}
    )
    by_hash = await _post(sqlite_client, token, {"extensions": _persisted(DIGEST)})
    assert registered.json()["data"] == by_hash.json()["data"] == {"campaigns": {"totalCount": 6}}


async def test_a_query_that_does_not_match_its_hash_is_refused(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    response = await _post(
        sqlite_client,
        make_token(),
        {"query": "{ me { subject } }", "extensions": _persisted(DIGEST)},
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    after = await _post(sqlite_client, make_token(), {"extensions": _persisted(DIGEST)})
    assert codes(after.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_registered_only_client_runs_trusted_documents_and_nothing_else(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token(client_id="partner-portal")
    trusted = await _post(sqlite_client, token, {"extensions": _persisted(TRUSTED["Me"]["id"])})
    assert trusted.json()["data"]["me"]["clientId"] == "partner-portal"
    free_text = await _post(sqlite_client, token, {"query": "{ me { subject } }"})
    assert free_text.status_code == 400
    assert codes(free_text.json()) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    apq = await _post(sqlite_client, token, {"query": QUERY, "extensions": _persisted(DIGEST)})
    assert codes(apq.json()) == ["PERSISTED_QUERY_NOT_ALLOWED"]


async def test_only_documents_that_parse_and_fit_are_kept(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    broken = "{ campaigns { "
    big = "{ me { subject } }" + "#" * (40 * 1024)
    for query in (broken, big):
        digest = hashlib.sha256(query.encode()).hexdigest()
        await _post(sqlite_client, token, {"query": query, "extensions": _persisted(digest)})
        again = await _post(sqlite_client, token, {"extensions": _persisted(digest)})
        assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_the_in_process_store_keeps_at_most_its_bytes_of_query_text() -> None:
    store = MemoryQueryStore(max_bytes=100)
    queries = {f"{n:064x}": "{ me { subject } }" + " " * 30 for n in range(3)}  # 48 bytes each
    for digest, query in queries.items():
        await store.put(digest, query)
    kept = [digest for digest in queries if await store.get(digest) is not None]
    assert kept == list(queries)[1:]


async def test_while_redis_is_away_queries_are_registered_and_found_in_process(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as server:
        store = create_query_store(server.url, namespace="lost")
        assert isinstance(store, RedisQueryStore)
        store.link.probe_interval_s = 0.05
        other = "{ me { subject } }"
        other_digest = hashlib.sha256(other.encode()).hexdigest()
        await store.put(DIGEST, QUERY)
        assert await store.get(DIGEST) == QUERY
        server.stop()
        assert await store.get(DIGEST) is None  # only Redis had it: a miss, not an error
        await store.put(other_digest, other)
        assert await store.get(other_digest) == other
        server.start()
        for _ in range(500):
            if store.link.is_up:
                break
            await asyncio.sleep(0.01)
        assert await store.get(other_digest) == other
        await store.put(DIGEST, QUERY)
        assert await store.link.redis.get(f"lost:apq:{DIGEST}") == QUERY.encode()
        await store.aclose()
