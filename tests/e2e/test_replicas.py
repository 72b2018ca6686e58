"""Replicas on one PostgreSQL and one Redis, as they run in production: three `hub serve`
processes started at once on a new database, the source simulators in a process of their own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import TEST_SECRET, MakeToken
from tests.e2e.conftest import REPO_ROOT, _free_port, _stop, _wait_until_healthy, simulators
from tests.helpers import codes, gql

REPLICAS = 3
SOCIAL_QUOTA_PER_S = 2.0
SOCIAL_BURST = 10  # SourceSettings.quota_burst


@pytest.fixture
async def new_database() -> AsyncIterator[str]:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        pytest.skip("HUB_TEST_DATABASE_URL is not set; replicas share a PostgreSQL store")
    url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    name = f"hub_replicas_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{url.rpartition('/')[0]}/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def namespace() -> AsyncIterator[tuple[str, str]]:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; replicas share their state in Redis")
    name = f"hub-replicas-{uuid.uuid4().hex[:8]}"
    yield url, name
    redis = Redis.from_url(url)
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@contextlib.contextmanager
def replicas(workdir: Path, env: dict[str, str], count: int) -> Iterator[list[str]]:
    """`count` `hub serve --demo` processes started at once; their base URLs once every one
    answers."""
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    with contextlib.ExitStack() as stack:
        for n in range(count):
            port = _free_port()
            log = workdir / f"replica-{n}.log"
            out = stack.enter_context(log.open("wb"))
            command = [
                *(sys.executable, "-m", "hub", "serve"),
                *("--host", "127.0.0.1", "--port", str(port), "--demo"),
            ]
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            stack.callback(_stop, process)
            started.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in started:
            _wait_until_healthy(process, url, log)
        yield [url for _process, url, _log in started]


@pytest.fixture
def hub_env(
    new_database: str, namespace: tuple[str, str], tmp_path: Path
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    redis_url, cache_namespace = namespace
    with simulators(tmp_path) as urls:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HUB_DATABASE_URL": new_database,
            "HUB_CACHE_URL": redis_url,
            "HUB_CACHE_NAMESPACE": cache_namespace,
            "HUB_REPLICAS": str(REPLICAS),
            "HUB_JWT_SECRET": TEST_SECRET,
            "HUB_SOCIAL_QUOTA_PER_S": str(SOCIAL_QUOTA_PER_S),
            **{f"HUB_{name.upper()}_URL": url for name, url in urls.items()},
        }
        yield env, urls


CONTACT = """mutation ($input: ContactInput!) { upsertContact(input: $input) { id } }"""
GRANT = """mutation ($id: ID!) { grantConsent(contactId: $id, purpose: "campaign_management",
  source: "web form", evidence: "doc-1") { status } }"""
WITHDRAW = """mutation ($id: ID!) {
  withdrawConsent(contactId: $id, purpose: "campaign_management") { status } }"""


async def test_replicas_started_together_on_a_new_database_share_consent_and_quota(
    hub_env: tuple[dict[str, str], dict[str, str]], tmp_path: Path, make_token: MakeToken
) -> None:
    env, urls = hub_env
    manager = make_token()
    with replicas(tmp_path, env, REPLICAS) as bases:
        clients = [httpx.AsyncClient(base_url=base, timeout=30) for base in bases]
        try:
            ready = [(await client.get("/readyz")).json()["status"] for client in clients]
            assert ready == ["ready"] * REPLICAS
            await _withdrawal_on_a_holds_on_b(clients, manager)
            await _one_social_quota_for_all(clients, urls["social"], make_token)
        finally:
            for client in clients:
                await client.aclose()
    for n in range(REPLICAS):
        assert "Traceback" not in (tmp_path / f"replica-{n}.log").read_text()


async def _withdrawal_on_a_holds_on_b(clients: list[httpx.AsyncClient], manager: str) -> None:
    a, b = clients[0], clients[1]
    _, found = await gql(a, "{ influencers(first: 1) { edges { node { id } } } }", token=manager)
    influencer = found["data"]["influencers"]["edges"][0]["node"]["id"]
    fields = {"email": "replica@example.com", "fullName": "Ola Nowak", "influencerId": influencer}
    _, made = await gql(a, CONTACT, token=manager, variables={"input": fields})
    contact = made["data"]["upsertContact"]["id"]
    await gql(a, GRANT, token=manager, variables={"id": contact})
    query = f'{{ contact(id: "{contact}") {{ email }} }}'
    _, before = await gql(b, query, token=manager)
    assert before["data"]["contact"]["email"] == "replica@example.com"
    _, withdrawn = await gql(a, WITHDRAW, token=manager, variables={"id": contact})
    assert withdrawn["data"]["withdrawConsent"]["status"] == "WITHDRAWN"
    _, after = await gql(b, query, token=manager)
    assert after["data"]["contact"]["email"] == "r***@example.com"


async def _one_social_quota_for_all(
    clients: list[httpx.AsyncClient], social_url: str, make_token: MakeToken
) -> None:
    """Forty requests, each needing a social API call of its own (a day of metrics nobody
    asked for before), spread over the replicas at once: together they call the social API no
    faster than one quota, where each replica's own bucket would let three bursts through."""
    analyst = make_token(roles=["analyst"], purpose="analytics")
    _, found = await gql(
        clients[0], "{ influencers(first: 1) { edges { node { id } } } }", token=analyst
    )
    influencer = found["data"]["influencers"]["edges"][0]["node"]["id"]
    async with httpx.AsyncClient(base_url=social_url) as social:
        await asyncio.sleep(SOCIAL_BURST / SOCIAL_QUOTA_PER_S)  # the bucket full again
        before = (await social.get("/_control/stats")).json()["total"]
        started = time.monotonic()
        windows = [date(2026, 9, 1) + timedelta(days=n) for n in range(40)]
        answers = await asyncio.gather(
            *(
                gql(
                    clients[n % len(clients)],
                    f'{{ influencer(id: "{influencer}") {{'
                    f' metrics(from: "2026-09-01", to: "{until}") {{ date }} }} }}',
                    token=analyst,
                )
                for n, until in enumerate(windows)
            )
        )
        elapsed = time.monotonic() - started
        calls = (await social.get("/_control/stats")).json()["total"] - before
    served = sum("errors" not in payload for _, payload in answers)
    limited = [payload for _, payload in answers if "errors" in payload]
    assert all(codes(payload) == ["SOURCE_UNAVAILABLE"] for payload in limited)
    assert served >= SOCIAL_BURST
    assert calls <= SOCIAL_BURST + SOCIAL_QUOTA_PER_S * elapsed + 1
