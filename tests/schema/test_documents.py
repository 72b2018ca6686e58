"""The document cache: tokens counted before parsing, only documents within limits kept."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

import httpx
import pytest
from graphql import GraphQLSyntaxError, parse
from strawberry.schema.schema import validate_document

from hub.errors import QueryTooComplex
from hub.schema import documents
from hub.schema.documents import MAX_KEPT_TEXT_BYTES, DocumentCache
from hub.settings import Settings
from tests.conftest import MakeToken, running_app
from tests.helpers import codes


def test_a_document_over_the_token_limit_is_refused_without_being_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    monkeypatch.setattr(documents, "parse", lambda text, **_: parsed.append(text))
    cache = DocumentCache(max_entries=10)
    with pytest.raises(QueryTooComplex) as refused:
        cache.parse("{ " + "a " * 5_000 + "}", max_tokens=1000)
    assert refused.value.details == {"limit": 1000, "actual": 1001}
    assert parsed == []
    assert len(cache) == 0


def test_a_kept_document_is_still_refused_to_a_caller_with_a_lower_token_limit() -> None:
    cache = DocumentCache(max_entries=10)
    text = "{ " + "a " * 1_500 + "}"
    assert cache.parse(text, max_tokens=3000).tokens == 1502
    with pytest.raises(QueryTooComplex) as refused:
        cache.parse(text, max_tokens=1000)
    assert refused.value.details == {"limit": 1000, "actual": 1502}


def test_documents_are_parsed_once_and_kept_by_the_hash_of_their_text() -> None:
    cache = DocumentCache(max_entries=2)
    first = cache.parse("{ a }", max_tokens=100)
    assert cache.parse("{ a }", max_tokens=100) is first
    cache.parse("{ b }", max_tokens=100)
    cache.parse("{ c }", max_tokens=100)
    assert len(cache) == 2
    assert cache.parse("{ a }", max_tokens=100) is not first


def test_a_document_that_does_not_parse_is_not_kept() -> None:
    cache = DocumentCache(max_entries=10)
    with pytest.raises(GraphQLSyntaxError):
        cache.parse("{ a", max_tokens=100)
    assert len(cache) == 0


def test_a_long_document_of_few_tokens_is_parsed_but_not_kept() -> None:
    cache = DocumentCache(max_entries=10)
    text = '{ a(b: "' + "x" * MAX_KEPT_TEXT_BYTES + '") }'
    assert cache.parse(text, max_tokens=100).tokens == 8
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("document", "operation_name", "message"),
    [
        ("query A { __typename } query B { __typename }", None, "several operations"),
        ("query A { __typename }", "B", "no operation of that name"),
        ("fragment F on Query { __typename }", None, "no operation to run"),
    ],
)
def test_a_request_that_names_no_single_operation_is_told_so(
    document: str, operation_name: str | None, message: str
) -> None:
    parsed = DocumentCache(max_entries=10).parse(document, max_tokens=100)
    assert parsed.operation(operation_name) is None
    assert message in documents._missing_operation(parsed, operation_name)


@pytest.mark.parametrize("idempotency_key", [None, "attack-1"])
async def test_a_large_document_over_the_token_limit_leaves_nothing_behind(
    sqlite_client: httpx.AsyncClient, idempotency_key: str | None
) -> None:
    body = "mutation { " + "a " * 100_000 + "}"
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2):
            response = await sqlite_client.post("/graphql", json={"query": body}, headers=headers)
            assert codes(response.json()) == ["QUERY_TOO_COMPLEX"]
        del response
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The body itself is 200 KB; its parse would be tens of megabytes.
    assert kept < 1_000_000


async def test_several_operations_without_an_operation_name_run_none(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token()
    document = (
        'mutation A { createCampaign(input: {name: "A", brand: "b"}) { id } } '
        'mutation B { createCampaign(input: {name: "B", brand: "b"}) { id } }'
    )
    response = await sqlite_client.post(
        "/graphql",
        json={"query": document},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "two-ops"},
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    count = await sqlite_client.post(
        "/graphql",
        json={"query": "{ campaigns(first: 100) { totalCount } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert count.json()["data"]["campaigns"]["totalCount"] == 6


def test_kept_documents_are_bounded_by_their_tokens_together() -> None:
    cache = DocumentCache(max_entries=100, max_tokens=10_000)
    for n in range(20):
        cache.parse("{ " + f"f{n} " * 2_000 + "}", max_tokens=3000)
    assert cache.tokens <= 10_000
    assert len(cache) == 4


async def test_many_large_distinct_documents_keep_only_what_the_document_cache_holds(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"document_cache_size": 5})
    token = make_token(roles=["analyst"], purpose="analytics")
    async with running_app(settings) as (_app, client):
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(20):
                spreads = " ".join(f"...V{n}x{i}" for i in range(90))
                document = f"query Q{n} {{ me {{ {spreads} }} }} " + " ".join(
                    f"fragment V{n}x{i} on Viewer {{ subject }}" for i in range(90)
                )
                response = await client.post(
                    "/graphql",
                    json={"query": document, "operationName": f"Q{n}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert "errors" not in response.json()
            del response
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # Each document parses to about a third of a megabyte (7 MB for all twenty when the
    # cache may keep them); the cache keeps five of them.
    assert kept < 4_000_000


async def test_a_document_sent_again_is_neither_parsed_nor_validated_again(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    validated: list[object] = []

    def counting_parse(text: str, **options: object) -> object:
        parsed.append(text)
        return parse(text, **options)  # type: ignore[arg-type]

    def counting_validate(*args: object) -> object:
        validated.append(args)
        return validate_document(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(documents, "parse", counting_parse)
    monkeypatch.setattr("hub.schema.documents.validate_document", counting_validate)
    for _ in range(3):
        response = await sqlite_client.post(
            "/graphql",
            json={"query": "{ campaigns(first: 2) { totalCount } }"},
            headers={"Authorization": f"Bearer {make_token()}"},
        )
        assert response.json()["data"]["campaigns"]["totalCount"] == 6
    assert (len(parsed), len(validated)) == (1, 1)


async def _post_raw(app: Any, body: bytes) -> int:
    """One POST /graphql straight through the ASGI app, with no client keeping anything."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 4711),
        "server": ("hub.test", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    sent = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return sent.pop() if sent else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def test_a_refused_large_document_is_freed_with_its_request_not_by_the_collector(
    sqlite_settings: Settings,
) -> None:
    body = json.dumps({"query": "{ " + "a " * 250_000 + "}"}).encode()
    async with running_app(sqlite_settings) as (app, _client):
        assert await _post_raw(app, body) == 200
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(10):
                await _post_raw(app, body)
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    # Ten bodies of 500 KB; an error's traceback held each in a reference cycle.
    assert kept < 1_000_000


async def test_large_variables_sent_with_a_kept_document_are_not_kept_with_it(
    sqlite_settings: Settings,
) -> None:
    query = "query Q($b: Boolean!) { __typename @include(if: $b) }"
    async with running_app(sqlite_settings) as (app, _client):
        assert (
            await _post_raw(app, json.dumps({"query": query, "variables": {"b": True}}).encode())
            == 200
        )
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(20):
                # A variable the operation does not declare, large and different each time: the
                # anonymous caller pays nothing for it.
                variables = {"b": True, "pad": f"{n}" + "p" * 200_000}
                body = json.dumps({"query": query, "variables": variables}).encode()
                assert await _post_raw(app, body) == 200
            del body, variables
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # The cost estimate was remembered per the whole variables' text: 4 MB here.
    assert kept < 500_000
