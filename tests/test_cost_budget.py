"""Limits, static cost and the per-client budget, through HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query
from sqlalchemy import event
from starlette.requests import Request

from hub.graphql_http import client_address
from hub.settings import Settings
from tests.conftest import ROOT, MakeToken, running_app
from tests.helpers import codes, gql


def _policies_with_tight_tier(tmp_path: Path) -> Path:
    """The shipped policies, plus client `tight`: 100 points, nearly no refill."""
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    cost = folder / "cost.yaml"
    text = cost.read_text()
    text = text.replace(
        "tiers:\n",
        "tiers:\n  tight:\n    max_query_cost: 50\n    bucket_size: 100\n"
        "    restore_rate_per_s: 0.01\n",
    ).replace("clients:\n", "clients:\n  tight: tight\n")
    cost.write_text(text)
    return folder


async def test_every_answer_reports_its_cost(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = "{ campaigns(first: 2) { edges { node { name } } } }"
    response = await sqlite_client.post(
        "/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {make_token(client_id='dash')}"},
    )
    cost = response.json()["extensions"]["cost"]
    # campaigns 1 + edges 1 + two nodes 1 each; `name` is a scalar (0).
    assert cost["requestedQueryCost"] == 4
    assert cost["actualQueryCost"] == 4
    assert cost["throttleStatus"]["maximumAvailable"] == 10000
    assert cost["throttleStatus"]["restoreRate"] == 100
    # A fresh bucket of the standard tier, less 4 points (refilled by at most a few).
    assert 9996 <= cost["throttleStatus"]["currentlyAvailable"] <= 10000
    assert response.headers["x-ratelimit-limit"] == "10000"


async def test_a_short_page_is_refunded(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    # acme has 6 campaigns: 100 nodes were estimated, 6 came back.
    _, payload = await gql(
        sqlite_client,
        "{ campaigns(first: 100) { edges { node { name } } } }",
        token=make_token(client_id="refund"),
    )
    cost = payload["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 102
    assert cost["actualQueryCost"] == 8


DEEP = (
    "{ influencers { edges { node { campaigns { edges { node { members { edges { node {"
    " influencer { campaigns { edges { node { id } } } } } } } } } } } } } }"
)


@pytest.mark.parametrize(
    ("query", "limit", "actual"),
    [
        ("{ " + " ".join(f"a{i}: me {{ subject }}" for i in range(30)) + " }", 10, 30),
        (
            "{ "
            + " ".join(
                f"a{i}: influencers {{ edges {{ node {{ accounts {{ followers }} audience "
                "{ interests } } } }"
                for i in range(12)
            )
            + " }",
            10,
            12,
        ),
        ("{ me { " + " ".join(f"s{i}: subject" for i in range(20)) + " } }", 15, 20),
        (DEEP, 12, 14),  # managers may go 12 deep (cost.yaml role_limits)
        ("{ me { " + "subject " * 1200 + "} }", 1000, 1001),
    ],
)
async def test_an_over_limit_document_is_refused_before_any_resolver(
    sqlite_settings: Settings, make_token: MakeToken, query: str, limit: int, actual: int
) -> None:
    async with running_app(sqlite_settings) as (app, client):
        statements: list[Any] = []
        engine = app.state.hub.engine.sync_engine

        def record(*statement: Any) -> None:
            statements.append(statement)

        simulators = app.state.hub.upstreams.simulators.urls
        async with httpx.AsyncClient() as control:
            before = [
                (await control.get(f"{url}/_control/stats")).json()["total"]
                for url in simulators.values()
            ]
            token = make_token()
            # The caller's tenant is known (its status is kept a while): what follows is
            # only the refused document's own work.
            await gql(client, "{ me { tenant } }", token=token)
            # Only the request's: shutting down releases the background jobs' leases.
            event.listen(engine, "before_cursor_execute", record)
            status, payload = await gql(client, query, token=token)
            event.remove(engine, "before_cursor_execute", record)
            after = [
                (await control.get(f"{url}/_control/stats")).json()["total"]
                for url in simulators.values()
            ]
    assert before == after, "no upstream may be called for a refused document"
    assert status == 400
    assert codes(payload) == ["QUERY_TOO_COMPLEX"]
    assert payload["errors"][0]["extensions"]["limit"] == limit
    assert payload["errors"][0]["extensions"]["actual"] == actual
    assert statements == []


async def test_a_query_over_the_maximum_cost_is_refused_with_the_figures(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = """{ influencers(first: 100) { edges { node { campaigns(first: 100) {
      edges { node { members(first: 100) { edges { node { id } } } } } } } } } }"""
    status, payload = await gql(sqlite_client, query, token=make_token(client_id="bi"))
    assert status == 400
    assert codes(payload) == ["COST_ESTIMATED_TOO_EXPENSIVE"]
    cost = payload["errors"][0]["extensions"]["cost"]
    assert cost["max"] == 5000 and cost["estimated"] > 1_000_000


async def test_an_empty_bucket_is_429_with_retry_after(
    tmp_path: Path, make_token: MakeToken
) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=_policies_with_tight_tier(tmp_path),
        jwt_secret="test-secret-0123456789abcdef0123456789",
        demo=True,
    )
    token = make_token(client_id="tight")
    query = "{ campaigns(first: 40) { edges { node { id } } } }"
    async with running_app(settings) as (app, client):
        results = [
            await client.post(
                "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
            )
            for _ in range(20)
        ]
        rejections = app.state.hub.metrics.value(
            "hub_cost_rejections_total", reason="client_budget"
        )
    admitted = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 429]
    assert len(admitted) + len(refused) == 20 and refused
    # 42 points estimated (2 + 40 nodes), 8 spent (6 campaigns): a request is admitted
    # while 42 are available, so 100 - 8k >= 42 holds for k = 0..7.
    assert len(admitted) == 8
    assert codes(refused[0].json()) == ["THROTTLED"]
    assert rejections == 12
    assert int(refused[0].headers["retry-after"]) >= 1


async def test_two_replicas_sharing_redis_admit_exactly_the_budget(
    tmp_path: Path, make_token: MakeToken
) -> None:
    import os

    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; the shared budget needs Redis")
    import redis.asyncio as redis

    client_id = f"tight-{os.getpid()}-{id(tmp_path)}"
    folder = _policies_with_tight_tier(tmp_path)
    cost = folder / "cost.yaml"
    cost.write_text(cost.read_text().replace("  tight: tight\n", f"  {client_id}: tight\n"))
    common: dict[str, Any] = {
        "policies_dir": folder,
        "jwt_secret": "test-secret-0123456789abcdef0123456789",
        "demo": True,
        "cache_url": redis_url,
    }
    one = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db", **common)
    two = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/b.db", **common)
    token = make_token(client_id=client_id)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with running_app(one) as (_a, first), running_app(two) as (_b, second):
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    (first if i % 2 else second).post(
                        "/graphql", json={"query": "{ me { subject } }"}, headers=headers
                    )
                    for i in range(200)
                )
            )
            elapsed_s = time.monotonic() - started
    finally:
        connection = redis.from_url(redis_url)
        await connection.delete(*[k async for k in connection.scan_iter(f"*{client_id}*")] or ["x"])
        await connection.aclose()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100
    retry_after = {int(r.headers["retry-after"]) for r in responses if r.status_code == 429}
    # One point at 0.01 per second: 100 seconds until the next request fits, less the
    # hundredths of a point refilled while the burst ran.
    assert max(retry_after) == 100
    assert min(retry_after) >= 100 - math.ceil(elapsed_s)


async def test_nothing_is_refunded_when_errors_nulled_part_of_the_answer(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    # Influencer.contacts is denied to analysts and non-null: whole influencers go null.
    query = "{ influencers(first: 50) { edges { node { handle contacts { id } } } } }"
    _, payload = await gql(
        sqlite_client, query, token=make_token(roles=["analyst"], client_id="probe")
    )
    cost = payload["extensions"]["cost"]
    assert codes(payload)[0] == "FORBIDDEN"
    assert cost["actualQueryCost"] == cost["requestedQueryCost"] > 50


async def test_a_page_size_sent_as_a_float_is_costed_like_an_int(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = "query ($n: Int) { campaigns(first: $n) { edges { node { name } } } }"
    _, as_float = await gql(sqlite_client, query, token=make_token(), variables={"n": 100.0})
    _, as_int = await gql(sqlite_client, query, token=make_token(), variables={"n": 100})
    assert as_float["extensions"]["cost"]["requestedQueryCost"] == 102
    assert as_int["extensions"]["cost"]["requestedQueryCost"] == 102


EXPENSIVE = (
    "{ campaigns(first: 100) { edges { node {"
    " members(first: 5) { edges { node { status } } } } } } }"
)
"""802 points: the anonymous tier's bucket (2,000) holds two such requests."""


async def test_refused_anonymous_requests_are_not_charged(
    sqlite_client: httpx.AsyncClient,
) -> None:
    refusals = [await gql(sqlite_client, EXPENSIVE) for _ in range(5)]
    status, allowed = await gql(sqlite_client, "{ me { subject } }")
    assert [(code, codes(payload)) for code, payload in refusals] == [
        (401, ["UNAUTHENTICATED"])
    ] * 5
    assert status == 200
    assert allowed["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] >= 1998


async def test_loading_graphiql_draws_nothing_from_a_budget(
    sqlite_client: httpx.AsyncClient,
) -> None:
    page = await sqlite_client.get("/graphql", headers={"Accept": "text/html"})
    introspections = [await gql(sqlite_client, get_introspection_query()) for _ in range(10)]
    _, after = await gql(sqlite_client, "{ me { subject } }")
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert {status for status, _ in introspections} == {401}
    assert after["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] >= 1998


@pytest.mark.parametrize(("trusted", "throttled"), [(True, True), (False, False)])
async def test_anonymous_callers_draw_on_a_budget_per_address(
    sqlite_settings: Settings, trusted: bool, throttled: bool
) -> None:
    proxies = [ipaddress.ip_network("127.0.0.1")] if trusted else []
    settings = sqlite_settings.model_copy(update={"trusted_proxies": proxies})
    async with running_app(settings) as (app, client):
        # Empty the budget of 203.0.113.7 (behind the proxy at 127.0.0.1).
        await app.state.hub.bucket.take(
            "anonymous@203.0.113.7", 2000, size=2000, restore_rate_per_s=20
        )
        answers = [
            await client.post(
                "/graphql",
                json={"query": "{ me { subject } }"},
                headers={"X-Forwarded-For": f"10.9.9.9, {address}"},
            )
            for address in ("203.0.113.7", "198.51.100.9")
        ]
    # From an untrusted peer the header is not believed: the peer's own bucket is used.
    assert [a.status_code for a in answers] == ([429, 200] if throttled else [200, 200])


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 4711), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "address"),
    [
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.5", ["6.6.6.6, 203.0.113.7, 10.0.0.6"], "203.0.113.7"),
        ("10.0.0.5", ["6.6.6.6", "203.0.113.7"], "203.0.113.7"),
        ("10.0.0.5", ["not-an-address"], "10.0.0.5"),
        ("10.0.0.5", ["10.0.0.7"], "10.0.0.7"),
        ("192.0.2.1", ["203.0.113.7"], "192.0.2.1"),
        ("2001:db8::1", ["203.0.113.7"], "2001:db8::1"),
        ("", ["203.0.113.7"], "unknown"),
    ],
)
def test_the_client_address_is_the_nearest_one_no_trusted_proxy_vouches_for(
    peer: str, forwarded: list[str], address: str
) -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/24")]
    assert client_address(_request(peer, forwarded), trusted) == address


async def test_the_service_sdl_follows_the_introspection_rule(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    query = "{ _service { sdl } }"
    anonymous_status, anonymous = await gql(sqlite_client, query)
    _, gateway = await gql(sqlite_client, query, token=make_token(roles=["analyst"]))
    _, partner = await gql(
        sqlite_client, query, token=make_token(roles=["partner"], scopes=["campaigns:read"])
    )
    assert anonymous_status == 401 and codes(anonymous) == ["UNAUTHENTICATED"]
    assert "type Campaign" in gateway["data"]["_service"]["sdl"]
    assert codes(partner) == ["FORBIDDEN"]


async def test_a_year_of_metrics_for_100_influencers_is_too_expensive_for_an_analyst(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token(roles=["analyst"], purpose="analytics")
    window = 'metrics(from: "2025-11-01", to: "2026-10-31") { date impressions }'
    status, payload = await gql(
        sqlite_client,
        f"{{ influencers(first: 100) {{ edges {{ node {{ {window} }} }} }} }}",
        token=token,
    )
    assert status == 400
    assert codes(payload) == ["COST_ESTIMATED_TOO_EXPENSIVE"]
    # 1 + edges 1 + 100 x (node 1 + metrics 10 + 365 days at 1 a day): the social API's reads.
    assert payload["errors"][0]["extensions"]["cost"] == {"estimated": 37602, "max": 5000}
    # A month for 20 of them is an ordinary report.
    month = window.replace("2025-11-01", "2026-10-02")
    _, payload = await gql(
        sqlite_client,
        f"{{ influencers(first: 20) {{ edges {{ node {{ {month} }} }} }} }}",
        token=token,
    )
    assert codes(payload) == []
    cost = payload["extensions"]["cost"]
    assert cost["requestedQueryCost"] == cost["actualQueryCost"] == 2 + 20 * (1 + 10 + 30)
