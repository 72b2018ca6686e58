"""GraphQL over HTTP: media types, status codes, limits and request ids."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from starlette.types import Message, Scope

from hub.settings import Settings
from tests.conftest import MakeToken, running_app
from tests.helpers import codes, gql

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def test_get_runs_a_query_and_answers_application_json(
    sqlite_client: httpx.AsyncClient,
) -> None:
    response = await sqlite_client.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["data"] == {"__typename": "Query"}


async def test_a_parse_failure_is_400_without_data_for_graphql_response_json(
    sqlite_client: httpx.AsyncClient,
) -> None:
    status, payload = await gql(sqlite_client, "{", accept=GRAPHQL_RESPONSE)
    assert status == 400
    assert "data" not in payload
    assert codes(payload) == ["GRAPHQL_PARSE_FAILED"]


async def test_a_validation_failure_is_200_for_application_json(
    sqlite_client: httpx.AsyncClient,
) -> None:
    status, payload = await gql(sqlite_client, "{ nope }", accept="application/json")
    assert status == 200
    assert codes(payload) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_variable_of_the_wrong_type_is_bad_user_input(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    status, payload = await gql(
        sqlite_client,
        "query ($n: Int) { campaigns(first: $n) { totalCount } }",
        token=make_token(),
        variables={"n": "many"},
    )
    assert status == 400
    assert codes(payload) == ["BAD_USER_INPUT"]


async def test_a_mutation_over_get_is_405(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.get(
        "/graphql",
        params={"query": 'mutation { createCampaign(input: {name: "a", brand: "b"}) { id } }'},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert codes(response.json()) == ["METHOD_NOT_ALLOWED"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "BAD_REQUEST"),
        (b'{"query": 5}', "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }", "variables": "x"}', "application/json", 400, "BAD_REQUEST"),
        (b"[]", "application/json", 400, "BAD_REQUEST"),
        (b"", "application/json", 400, "BAD_REQUEST"),
        (b'{"query": "{ __typename }"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            b'{"query": "{ __typename }"}',
            "application/json; charset=latin-1",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ],
)
async def test_unusable_requests_get_a_status_and_a_code(
    sqlite_client: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await sqlite_client.post(
        "/graphql", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert codes(response.json()) == [code]


async def test_a_body_over_the_limit_is_413_and_changes_nothing(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    name = "x" * (1024 * 1024)
    query = f'mutation {{ createCampaign(input: {{name: "{name}", brand: "b"}}) {{ id }} }}'
    token = make_token()
    response = await sqlite_client.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 413
    assert codes(response.json()) == ["PAYLOAD_TOO_LARGE"]
    _, payload = await gql(sqlite_client, "{ campaigns { totalCount } }", token=token)
    assert payload["data"]["campaigns"]["totalCount"] == 6


async def test_an_unacceptable_accept_header_is_406(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/csv"}
    )
    assert response.status_code == 406
    assert codes(response.json()) == ["NOT_ACCEPTABLE"]


async def test_every_response_carries_a_request_id(sqlite_client: httpx.AsyncClient) -> None:
    given = await sqlite_client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"x-request-id": "abc-123"}
    )
    made = await sqlite_client.get("/healthz")
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["extensions"]["requestId"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    odd = await sqlite_client.get("/healthz", headers={"x-request-id": "bad id!"})
    assert odd.headers["x-request-id"] != "bad id!"


async def test_a_bad_token_is_401_with_a_reason(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": "Bearer abc"}
    )
    assert response.status_code == 401
    assert codes(response.json()) == ["UNAUTHENTICATED"]
    assert "Traceback" not in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_anonymous_callers_get_typename_but_no_data(
    sqlite_client: httpx.AsyncClient,
) -> None:
    status, payload = await gql(sqlite_client, "{ influencers { totalCount } }")
    assert status == 401
    assert codes(payload) == ["UNAUTHENTICATED"]


async def test_browsers_get_graphiql(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    asset = await sqlite_client.get("/graphiql/assets/graphiql.min.css")
    assert asset.status_code == 200


async def test_health_and_readiness(sqlite_client: httpx.AsyncClient) -> None:
    assert (await sqlite_client.get("/healthz")).json() == {"status": "ok"}
    ready = await sqlite_client.get("/readyz")
    assert ready.status_code == 200
    assert json.loads(ready.text)["store"] == "ok"


async def test_a_field_error_beside_data_keeps_status_200(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token(roles=["partner"], scopes=["campaigns:read"])
    status, payload = await gql(
        sqlite_client,
        '{ campaigns { totalCount } contact(id: "con_0000000000000001") { id } }',
        token=token,
    )
    assert status == 200
    assert payload["data"]["campaigns"]["totalCount"] == 6
    assert codes(payload) == ["FORBIDDEN"]


async def test_an_unknown_operation_name_is_a_bad_request(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]


async def test_content_type_parameters_besides_charset_are_accepted(
    sqlite_client: httpx.AsyncClient,
) -> None:
    response = await sqlite_client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "application/json; foo=bar; charset=UTF-8"},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    "representation",
    [
        '{__typename: "Campaign"}',
        '{__typename: "Nope", id: "x"}',
        '{__typename: "Campaign", id: 5}',
    ],
)
async def test_malformed_entity_representations_are_bad_user_input(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken, representation: str
) -> None:
    query = f"{{ _entities(representations: [{representation}]) {{ __typename }} }}"
    _, payload = await gql(sqlite_client, query, token=make_token())
    assert codes(payload) == ["BAD_USER_INPUT"]
    assert payload["errors"][0]["extensions"]["argument"] == "representations"


async def test_deeply_nested_json_is_a_bad_request(sqlite_client: httpx.AsyncClient) -> None:
    nested = '{"query": "{ __typename }", "variables": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = await sqlite_client.post(
        "/graphql", content=nested.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]


PERSISTED = '"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "' + "0" * 64 + '"}}'


@pytest.mark.parametrize(
    "body",
    [
        '{"query": "{ __typename } # \\ud800", ' + PERSISTED + "}",
        '{"query": "{ __typename }", "operationName": "A\\udfff"}',
        '{"query": "{ __typename }", "extensions": {"trace": ["\\ud800"]}}',
    ],
)
async def test_a_lone_surrogate_outside_the_variables_is_a_bad_request(
    sqlite_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: str
) -> None:
    response = await sqlite_client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    assert "not valid Unicode" in response.json()["errors"][0]["message"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("literal", ['"\\ud800"', '"\\u{DFFF}"', '"\\udc00\\ud800"'])
async def test_a_lone_surrogate_in_an_inline_literal_is_a_parse_failure(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken, literal: str
) -> None:
    query = f'mutation {{ createCampaign(input: {{name: {literal}, brand: "b"}}) {{ id }} }}'
    _, payload = await gql(sqlite_client, query, token=make_token())
    assert codes(payload) == ["GRAPHQL_PARSE_FAILED"], payload
    _, after = await gql(sqlite_client, "{ campaigns { totalCount } }", token=make_token())
    assert after["data"]["campaigns"]["totalCount"] == 6


@pytest.mark.parametrize(("declared", "status"), [(b"\xb2", 200), (b"9" * 5000, 413)])
async def test_a_content_length_that_is_no_number_is_no_server_error(
    sqlite_client: httpx.AsyncClient, declared: bytes, status: int
) -> None:
    response = await sqlite_client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={b"content-type": b"application/json", b"content-length": declared},
    )
    assert response.status_code == status


async def test_a_client_that_disconnects_mid_body_is_no_error_in_the_log(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"query": "{ __typename }"}'
    messages: list[Message] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"27")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    async with running_app(sqlite_settings) as (app, _client):
        await app(scope, receive, send)
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
    ] == []
    assert sent[0]["status"] == 499
