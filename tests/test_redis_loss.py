"""Redis lost and back, as two replicas on one store live it: they keep serving, say they are
degraded, hold a withdrawal made on the other, stay within the budgets, and come back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from hub.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import codes
from tests.redis_server import RedisServer, running_redis

BUDGET = 100
RESTORE_PER_S = 0.01
CONTACT = "query ($id: ID!) { contact(id: $id) { id email fullName jobTitle company } }"
WITHDRAW = """mutation ($id: ID!) {
  withdrawConsent(contactId: $id, purpose: "campaign_management") { status } }"""
GRANT = """mutation ($id: ID!) {
  grantConsent(contactId: $id, purpose: "campaign_management", source: "call") { status } }"""
TRAFFIC = [
    "{ campaigns(first: 3) { edges { node { name members(first: 2) { edges { node {"
    " influencer { handle audience { interests } accounts { followers } } } } } } } } }",
    "{ influencers(first: 5) { edges { node { handle contacts { email jobTitle } } } } }",
    "{ me { subject tenant } }",
]


def _policies(tmp_path: Path) -> Path:
    """The shipped policies, plus client `tight`: a budget of 100 points, nearly no refill."""
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    cost = folder / "cost.yaml"
    cost.write_text(
        cost.read_text()
        .replace(
            "tiers:\n",
            f"tiers:\n  tight:\n    max_query_cost: 50\n    bucket_size: {BUDGET}\n"
            f"    restore_rate_per_s: {RESTORE_PER_S}\n",
        )
        .replace("clients:\n", "clients:\n  tight: tight\n")
    )
    return folder


class Replicas:
    """Two hub processes on one SQLite file and one Redis; every answer is recorded."""

    def __init__(self, one: httpx.AsyncClient, two: httpx.AsyncClient) -> None:
        self.clients = (one, two)
        self.answers: list[tuple[int, dict[str, Any]]] = []

    async def ask(
        self,
        replica: int,
        query: str | None,
        token: str,
        variables: dict[str, Any] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {} if query is None else {"query": query}
        if variables is not None:
            body["variables"] = variables
        if extensions is not None:
            body["extensions"] = extensions
        response = await self.clients[replica].post(
            "/graphql",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        answer = (response.status_code, response.json())
        self.answers.append(answer)
        return answer

    async def readiness(self, replica: int) -> tuple[int, dict[str, Any]]:
        response = await self.clients[replica].get("/readyz")
        return response.status_code, response.json()

    async def until_both(self, status: str) -> None:
        for _ in range(1000):
            states = [(await self.readiness(n))[1]["status"] for n in (0, 1)]
            if states == [status, status]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not both {status}: {states}")


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, server: RedisServer, *, first_url: str | None = None
) -> AsyncIterator[Replicas]:
    """Replicas A and B; A reaches Redis at `first_url` when given (one where none listens:
    A is cut off from the Redis that B uses)."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/shared.db",
        policies_dir=_policies(tmp_path),
        jwt_secret=TEST_SECRET,
        demo=True,
        cache_url=server.url,
        cache_namespace=f"hub-test-{uuid.uuid4().hex[:8]}",
        response_cache_ttl_s=60.0,
        replicas=2,
    )
    first = settings.model_copy(update={"cache_url": first_url or server.url})
    async with running_app(first) as (_a, one), running_app(settings) as (_b, two):
        yield Replicas(one, two)


async def _consented_contact(hub: Replicas, token: str) -> tuple[str, str]:
    """A contact whose email and CRM job title the caller's purpose may read, and the email."""
    listed = "{ influencers(first: 100) { edges { node { contacts { id email jobTitle } } } } }"
    _, found = await hub.ask(0, listed, token)
    for edge in found["data"]["influencers"]["edges"]:
        for contact in edge["node"]["contacts"]:
            if contact["email"] and "***" not in contact["email"] and contact["jobTitle"]:
                return contact["id"], contact["email"]
    raise AssertionError("no consented contact in the demo data")


async def _keep_asking(hub: Replicas, token: str, asked: list[int], stop: asyncio.Event) -> None:
    """Traffic on both replicas until `stop`, whatever Redis is doing; `asked[0]` counts it."""
    while not stop.is_set():
        await hub.ask(asked[0] % 2, TRAFFIC[asked[0] % len(TRAFFIC)], token)
        asked[0] += 1
        await asyncio.sleep(0.005)


async def _spend(hub: Replicas, token: str, count: int) -> int:
    """Points the budget of client `tight` admitted out of `count` one-point requests."""
    admitted = 0
    for n in range(count):
        status, answer = await hub.ask(n % 2, "{ me { subject } }", token)
        assert status in (200, 429), answer
        if status == 200:
            assert answer["extensions"]["cost"]["requestedQueryCost"] == 1
            admitted += 1
    return admitted


async def test_redis_lost_and_back_costs_no_request_a_500_nor_a_withdrawal_nor_the_budget(
    tmp_path: Path, make_token: MakeToken
) -> None:
    manager = make_token()
    tight = make_token(client_id="tight")
    with running_redis(tmp_path) as server:
        async with replicas(tmp_path, server) as hub:
            started = time.monotonic()
            contact_id, email = await _consented_contact(hub, manager)
            variables = {"id": contact_id}
            for replica in (1, 1, 0):  # B's second answer is a kept one
                _, warm = await hub.ask(replica, CONTACT, manager, variables)
                assert warm["data"]["contact"]["email"] == email
            personal = [warm["data"]["contact"][field] for field in ("fullName", "jobTitle")]
            assert all(personal) and not any("***" in value for value in personal)
            for replica in (0, 1):
                status, ready = await hub.readiness(replica)
                assert (status, ready["status"], ready["cache"]) == (200, "ready", "ok")
            spent = await _spend(hub, tight, 30)
            assert spent == 30

            stop, asked = asyncio.Event(), [0]
            traffic = asyncio.create_task(_keep_asking(hub, manager, asked, stop))
            await asyncio.sleep(0.2)
            server.stop()
            asked_before = asked[0]
            await hub.until_both("degraded")
            for replica in (0, 1):
                status, ready = await hub.readiness(replica)
                assert (status, ready["store"], ready["cache"]) == (200, "ok", "unreachable")
                for query in TRAFFIC:  # every source, personal data, twice: caches warm
                    for _ in range(2):
                        status, answer = await hub.ask(replica, query, manager)
                        assert (status, "errors" in answer) == (200, False), answer

            # A withdrawal through A while Redis is away holds on B's very next request.
            _, withdrawn = await hub.ask(0, WITHDRAW, manager, variables)
            assert withdrawn["data"] == {"withdrawConsent": {"status": "WITHDRAWN"}}
            assert "errors" not in withdrawn
            _, after = await hub.ask(1, CONTACT, manager, variables)
            assert after["data"]["contact"]["email"] != email
            assert email not in str(after)
            assert "CONSENT_REQUIRED" in codes(after) or "***" in after["data"]["contact"]["email"]
            assert not any(value in str(after) for value in personal)  # the CRM's job title too

            # Persisted queries register and run on each replica alone.
            query = "{ campaigns(first: 1) { totalCount } }"
            digest = hashlib.sha256(query.encode()).hexdigest()
            apq = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
            await hub.ask(1, query, manager, extensions=apq)
            _, by_hash = await hub.ask(1, None, manager, extensions=apq)
            assert by_hash["data"] == {"campaigns": {"totalCount": 6}}

            # Each replica admits its share of the budget, and no more.
            spent_away = await _spend(hub, tight, 160)
            assert spent_away == BUDGET

            asked_away = asked[0] - asked_before
            server.start()
            await hub.until_both("ready")
            stop.set()
            await traffic
            assert asked_away > 0
            # Back on the shared bucket, charged with what the shares admitted.
            spent_after = await _spend(hub, tight, 20)
            refilled = RESTORE_PER_S * (time.monotonic() - started)
            total = spent + spent_away + spent_after
            assert total <= BUDGET + refilled + BUDGET  # the budget, and the local shares
            assert spent_after <= 1 + refilled

            # The purge channel is back: a grant through A is seen by B's kept answers.
            _, kept = await hub.ask(1, CONTACT, manager, variables)
            _, kept = await hub.ask(1, CONTACT, manager, variables)
            assert kept["data"]["contact"]["email"] != email
            await hub.ask(0, GRANT, manager, variables)
            _, granted = await hub.ask(1, CONTACT, manager, variables)
            assert granted["data"]["contact"]["email"] == email

    failures = [
        answer
        for answer in hub.answers
        if answer[0] >= 500 or "INTERNAL_SERVER_ERROR" in codes(answer[1])
    ]
    assert failures == []


async def test_a_withdrawal_through_a_replica_cut_off_from_redis_holds_on_the_others_kept_answers(
    tmp_path: Path, make_token: MakeToken
) -> None:
    manager = make_token()
    with running_redis(tmp_path) as server:
        nowhere = RedisServer(tmp_path)  # never started: nothing listens on its port
        async with replicas(tmp_path, server, first_url=nowhere.url) as hub:
            contact_id, email = await _consented_contact(hub, manager)
            variables = {"id": contact_id}
            for _ in range(2):  # B's second answer is a kept one
                _, warm = await hub.ask(1, CONTACT, manager, variables)
                assert warm["data"]["contact"]["email"] == email
            _, withdrawn = await hub.ask(0, WITHDRAW, manager, variables)
            assert withdrawn["data"] == {"withdrawConsent": {"status": "WITHDRAWN"}}
            # A could tell no one to drop B's kept answer; B asks the store all the same.
            _, after = await hub.ask(1, CONTACT, manager, variables)
            assert (await hub.readiness(0))[1]["cache"] == "unreachable"
            assert (await hub.readiness(1))[1]["status"] == "ready"
    assert email not in str(after)
    assert after["data"]["contact"]["email"] != email
