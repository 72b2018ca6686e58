"""Automatic persisted queries (Apollo's protocol) and the trusted-documents manifest."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.conftest import ROOT, MakeToken
from tests.helpers import codes

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
