"""Browsers: CORS preflights for the configured origins only; gzip for answers over 1 KiB."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from hub.settings import Settings, SettingsError, load_settings
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app

ALLOWED = "https://app.example.com"
REQUESTED_HEADERS = "authorization, content-type, idempotency-key, x-request-id"
BIG = "{ influencers(first: 40) { edges { node { id handle displayName country } } } }"


def _settings(tmp_path: Path, *origins: str) -> Settings:
    return load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=True,
        cors_origins=list(origins),
    )


async def _preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/graphql",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": REQUESTED_HEADERS,
        },
    )


async def test_a_preflight_from_a_configured_origin_is_answered_and_no_other(
    tmp_path: Path, make_token: MakeToken
) -> None:
    async with running_app(_settings(tmp_path, ALLOWED, "http://localhost:5173")) as (_, client):
        allowed = await _preflight(client, ALLOWED)
        other = await _preflight(client, "https://evil.example.com")
        answer = await client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Origin": ALLOWED, "Authorization": f"Bearer {make_token()}"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    allowed_headers = {
        h.strip() for h in allowed.headers["access-control-allow-headers"].split(",")
    }
    assert allowed_headers >= {"Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"}
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-headers" not in other.headers
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.headers["access-control-expose-headers"].lower() == "x-request-id"


async def test_without_cors_origins_no_preflight_is_answered(tmp_path: Path) -> None:
    async with running_app(_settings(tmp_path)) as (_, client):
        response = await _preflight(client, ALLOWED)
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-headers" not in response.headers


@pytest.mark.parametrize("origin", ["https://app.example.com/", "*", "app.example.com"])
def test_an_origin_that_is_not_scheme_host_port_stops_start_up(origin: str) -> None:
    with pytest.raises(SettingsError, match="HUB_CORS_ORIGINS"):
        load_settings(cors_origins=[origin])


async def test_answers_over_1_kib_are_gzipped_for_clients_that_accept_it(
    tmp_path: Path, make_token: MakeToken
) -> None:
    headers = {"Authorization": f"Bearer {make_token()}", "Accept-Encoding": "gzip"}
    async with running_app(_settings(tmp_path)) as (_, client):
        async with client.stream("POST", "/graphql", json={"query": BIG}, headers=headers) as big:
            raw = b"".join([chunk async for chunk in big.aiter_raw()])
        small = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        plain = await client.post(
            "/graphql", json={"query": BIG}, headers={**headers, "Accept-Encoding": "identity"}
        )
    assert big.headers["content-encoding"] == "gzip"
    body = json.loads(gzip.decompress(raw))
    assert len(body["data"]["influencers"]["edges"]) == 40
    assert len(raw) < len(plain.content) > 1024
    assert big.headers["x-request-id"]
    assert "content-encoding" not in small.headers
    assert len(small.content) < 1024
    assert "content-encoding" not in plain.headers
