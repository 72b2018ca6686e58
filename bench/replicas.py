"""Replicas under a mixed load: `hub serve` processes on one PostgreSQL database and one Redis,
the source simulators in a process of their own (prints figures, then the invariants).

    a new PostgreSQL database, a Redis namespace of its own, `hub simulate`
    --replicas (2) x `hub serve --demo`, started together, one social API quota for all
      -> --duration-s (30) of workers, each request on a replica picked at random:
           dashboard     the campaign dashboard (manager)
           bi            a BI pull: 50 influencers' metrics over one of 60 windows (analyst)
           consent       grant, read on another replica, withdraw, read on another replica
           write         createCampaign with an Idempotency-Key, sent again at once to the
                         other replicas (the retry of a client that timed out)
      -> per operation: requests, req/s, p50/p99, errors
      -> the invariants, checked afterwards:
           writes   campaigns in the store == keys acknowledged (none lost, none doubled)
           budget   a client with a bucket of BUDGET points and no refill, asked from all the
                    replicas at once until THROTTLED: the points admitted == BUDGET
           consent  no read sent after a withdrawal was acknowledged served the email
           quota    the social API's calls <= burst + quota x elapsed

Needs PostgreSQL (`--database-url`, default `HUB_TEST_DATABASE_URL` or the local server) and
Redis (`--redis-url`, default `HUB_TEST_REDIS_URL` or the local server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from dashboard import DASHBOARD, WINDOW, prepare
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from throughput import (
    BenchError,
    Server,
    _exit_on_signal,
    _positive,
    cpu_model,
    free_port,
    running,
    stop,
)
from unthrottled import unthrottled_policies

from hub.auth import issue_token
from hub.settings import Settings

SECRET = "bench-replicas-secret-0123456789abcdef"
CLIENT_ID = "bench-replicas"
METERED = "bench-metered"
BUDGET = 140
"""Points in the metered client's bucket; BUDGET_QUERY costs exactly 7 of them."""
BUDGET_QUERY = "{ campaigns(first: 5) { edges { node { name } } } }"
SOCIAL_QUOTA_PER_S = 2.0
"""Below what the BI pulls ask of the social API: the replicas must share it."""
SOCIAL_BURST = 10
"""The social client's default burst (`SourceSettings.quota_burst`)."""
BI_WINDOWS = 60
MIX = {"dashboard": 4, "bi": 4, "consent": 2, "write": 2}
"""Workers per operation, for each 12 of `--workers`."""
REQUEST_TIMEOUT_S = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return asyncio.run(run(args))
    except BenchError as exc:
        print(f"replicas: {exc}", file=sys.stderr)
        return 1


async def run(args: argparse.Namespace) -> int:
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; {args.replicas} replicas")
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:
        workdir = Path(folder)
        async with (
            new_database(args.database_url) as database_url,
            redis_namespace(args.redis_url) as namespace,
        ):
            with simulators(workdir) as urls:
                env = environment(workdir, database_url, args.redis_url, namespace, urls)
                env["HUB_REPLICAS"] = str(args.replicas)
                with replicas(workdir, env, args.replicas) as servers:
                    bench = Bench(servers, urls["social"])
                    await bench.prepare()
                    await bench.load(args.duration_s, args.workers)
                    await bench.spend_budget()
            writes = await stored_writes(database_url)
    return bench.report(args.duration_s, writes)


@contextlib.asynccontextmanager
async def new_database(admin_url: str) -> AsyncIterator[str]:
    """A database of the run's own (its URL), dropped afterwards."""
    url = admin_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    name = f"bench_replicas_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OSError as error:
        raise BenchError(f"PostgreSQL is not reachable at {admin_url}: {error}") from None
    try:
        yield f"{url.rpartition('/')[0]}/{name}"
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def redis_namespace(url: str) -> AsyncIterator[str]:
    namespace = f"bench-replicas-{uuid.uuid4().hex[:8]}"
    try:
        yield namespace
    finally:
        redis = Redis.from_url(url)
        keys = [key async for key in redis.scan_iter(match=f"{namespace}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@contextlib.contextmanager
def simulators(workdir: Path) -> Iterator[dict[str, str]]:
    """`hub simulate` on three ports in a row."""
    for _ in range(20):
        port = free_port()
        command = [sys.executable, "-m", "hub", "simulate", "--port", str(port)]
        log = workdir / "simulators.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        urls = {name: f"http://127.0.0.1:{port + n}" for n, name in enumerate(NAMES)}
        try:
            if _answering(process, urls):
                print(f"simulators: pid {process.pid}, {urls['crm']} and the next two ports")
                yield urls
                return
        finally:
            stop(process)
    raise BenchError("the simulators found no three free ports in a row")


NAMES = ("crm", "social", "discovery")


def _answering(process: Any, urls: dict[str, str]) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if all(httpx.get(f"{url}/_control/stats").status_code == 200 for url in urls.values()):
                return True
        time.sleep(0.2)
    return False


def environment(
    workdir: Path, database_url: str, redis_url: str, namespace: str, urls: dict[str, str]
) -> dict[str, str]:
    policies = unthrottled_policies(workdir, [CLIENT_ID])
    cost_file = policies / "cost.yaml"
    cost = yaml.safe_load(cost_file.read_text(encoding="utf-8"))
    cost["tiers"]["bench-metered"] = {
        "max_query_cost": 50,
        "bucket_size": BUDGET,
        "restore_rate_per_s": 0.0001,
    }
    cost["clients"][METERED] = "bench-metered"
    cost_file.write_text(yaml.safe_dump(cost, sort_keys=False), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(
        {
            "HUB_DATABASE_URL": database_url,
            "HUB_CACHE_URL": redis_url,
            "HUB_CACHE_NAMESPACE": namespace,
            "HUB_POLICIES_DIR": str(policies),
            "HUB_JWT_SECRET": SECRET,
            "HUB_SOCIAL_QUOTA_PER_S": str(SOCIAL_QUOTA_PER_S),
            **{f"HUB_{name.upper()}_URL": url for name, url in urls.items()},
        }
    )
    return env


@contextlib.contextmanager
def replicas(workdir: Path, env: dict[str, str], count: int) -> Iterator[list[Server]]:
    """`count` replicas, started together (each waits for the others' migrations)."""
    with contextlib.ExitStack() as stack:
        command = [sys.executable, "-m", "hub", "serve", "--demo", "--port", "{port}"]
        servers: list[Server] = []
        # `running` waits for each before returning; start them all from threads at once.
        with ThreadPoolExecutor(count) as pool:
            starting = [
                pool.submit(
                    stack.enter_context, running(f"replica-{n}", command, env=env, workdir=workdir)
                )
                for n in range(count)
            ]
            servers = [future.result() for future in starting]
        yield servers


def token(*, role: str, purpose: str, client_id: str = CLIENT_ID, subject: str = "bench") -> str:
    settings = Settings(jwt_secret=SECRET)
    return issue_token(
        settings,
        subject=subject,
        tenant="acme",
        roles=[role],
        purpose=purpose,
        client_id=client_id,
        ttl_s=6 * 3600,
    )


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    limited: int = 0
    """Answers whose only errors are SOURCE_UNAVAILABLE: a source over its quota."""

    def count(self, payload: dict[str, Any]) -> None:
        codes = {error.get("extensions", {}).get("code") for error in payload.get("errors", [])}
        if codes == {"SOURCE_UNAVAILABLE"}:
            self.limited += 1
        elif codes:
            self.errors += 1


class Bench:
    """The clients of the run, one per replica, and what they saw."""

    def __init__(self, servers: list[Server], social_url: str) -> None:
        self.servers = servers
        self.social_url = social_url
        self.clients = [
            httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S) for server in servers
        ]
        self.manager = token(role="manager", purpose="campaign_management")
        self.analyst = token(role="analyst", purpose="analytics")
        self.timings: dict[str, Timings] = defaultdict(Timings)
        self.campaign = ""
        self.influencer = ""
        self.contacts: list[str] = []
        self.keys: dict[str, str] = {}
        """Each Idempotency-Key acknowledged, with the campaign id every replica answered."""
        self.split_answers = 0
        self.stale_reads = 0
        self.consent_reads = 0
        self.budget_admitted = 0
        self.budget_refused = 0
        self.social_calls = 0
        self.social_elapsed_s = 0.0

    async def ask(
        self,
        client: httpx.AsyncClient,
        query: str,
        token: str,
        variables: Any = None,
        **headers: str,
    ) -> dict[str, Any]:
        answer = await client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}", **headers},
        )
        payload: dict[str, Any] = answer.json()
        return payload

    async def prepare(self) -> None:
        self.campaign = await prepare(self.clients[0], self.manager)
        found = await self.ask(
            self.clients[0], "{ influencers(first: 1) { edges { node { id } } } }", self.manager
        )
        self.influencer = found["data"]["influencers"]["edges"][0]["node"]["id"]
        for n in range(8):
            made = await self.ask(
                self.clients[n % len(self.clients)],
                "mutation ($i: ContactInput!) { upsertContact(input: $i) { id } }",
                self.manager,
                {"i": {"email": f"bench-{n}@example.com", "influencerId": self.influencer}},
            )
            self.contacts.append(made["data"]["upsertContact"]["id"])

    async def load(self, duration_s: int, workers: int) -> None:
        operations: dict[str, Callable[[random.Random], Awaitable[None]]] = {
            "dashboard": self.dashboard,
            "bi": self.bi,
            "consent": self.consent,
            "write": self.write,
        }
        async with httpx.AsyncClient(base_url=self.social_url) as social:
            before = (await social.get("/_control/stats")).json()["total"]
            started = time.monotonic()
            deadline = started + duration_s
            tasks = []
            for name, share in MIX.items():
                for n in range(max(1, workers * share // sum(MIX.values()))):
                    rng = random.Random(f"{name}-{n}")
                    tasks.append(self.worker(operations[name], name, rng, deadline))
            await asyncio.gather(*tasks)
            self.social_elapsed_s = time.monotonic() - started
            self.social_calls = (await social.get("/_control/stats")).json()["total"] - before

    async def worker(
        self,
        operation: Callable[[random.Random], Awaitable[None]],
        name: str,
        rng: random.Random,
        deadline: float,
    ) -> None:
        timings = self.timings[name]
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                await operation(rng)
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                timings.errors += 1
            timings.seconds.append(time.perf_counter() - started)

    def _client(
        self, rng: random.Random, *, other_than: httpx.AsyncClient | None = None
    ) -> httpx.AsyncClient:
        choices = [client for client in self.clients if client is not other_than]
        return rng.choice(choices or self.clients)

    async def dashboard(self, rng: random.Random) -> None:
        payload = await self.ask(
            self._client(rng), DASHBOARD, self.manager, {"id": self.campaign, **WINDOW}
        )
        self.timings["dashboard"].count(payload)

    async def bi(self, rng: random.Random) -> None:
        until = date(2026, 8, 1) + timedelta(days=rng.randrange(BI_WINDOWS))
        query = (
            "{ influencers(first: 50) { edges { node { id handle "
            f'metrics(from: "2026-08-01", to: "{until}", granularity: WEEK) '
            "{ date impressions } } } } }"
        )
        payload = await self.ask(self._client(rng), query, self.analyst)
        self.timings["bi"].count(payload)

    async def consent(self, rng: random.Random) -> None:
        # A contact of its own while it runs: another worker's grant must not come between.
        contact = self.contacts.pop(rng.randrange(len(self.contacts)))
        try:
            await self._consent_round(rng, contact)
        finally:
            self.contacts.append(contact)

    async def _consent_round(self, rng: random.Random, contact: str) -> None:
        variables = {"id": contact}
        writer = self._client(rng)
        reader = self._client(rng, other_than=writer)
        read = f'{{ contact(id: "{contact}") {{ email }} }}'
        await self.ask(writer, GRANT, self.manager, variables)
        await self.ask(reader, read, self.manager)
        withdrawn = await self.ask(writer, WITHDRAW, self.manager, variables)
        if withdrawn.get("data", {}).get("withdrawConsent", {}).get("status") != "WITHDRAWN":
            self.timings["consent"].errors += 1
            return
        after = await self.ask(reader, read, self.manager)
        self.consent_reads += 1
        email = (after.get("data") or {}).get("contact", {}).get("email") or ""
        if email.startswith("bench-"):
            self.stale_reads += 1

    async def write(self, rng: random.Random) -> None:
        key = uuid.uuid4().hex
        first = self._client(rng)
        variables = {"name": f"bench-write-{key}"}
        answers = [
            await self.ask(first, CREATE, self.manager, variables, **{"Idempotency-Key": key})
        ]
        answers += await asyncio.gather(
            *(
                self.ask(client, CREATE, self.manager, variables, **{"Idempotency-Key": key})
                for client in self.clients
                if client is not first
            )
        )
        ids = {(answer.get("data") or {}).get("createCampaign", {}).get("id") for answer in answers}
        if len(ids) != 1 or None in ids:
            self.split_answers += 1
            return
        self.keys[key] = ids.pop()

    async def spend_budget(self) -> None:
        """The metered client's bucket, asked from every replica at once until it is empty."""
        metered = token(role="analyst", purpose="analytics", client_id=METERED)
        answers = await asyncio.gather(
            *(
                self.ask(self.clients[n % len(self.clients)], BUDGET_QUERY, metered)
                for n in range(3 * BUDGET // 7)
            )
        )
        for answer in answers:
            codes = [error.get("extensions", {}).get("code") for error in answer.get("errors", [])]
            if "THROTTLED" in codes:
                self.budget_refused += 1
            else:
                self.budget_admitted += answer["extensions"]["cost"]["actualQueryCost"]
        for client in self.clients:
            await client.aclose()

    def report(self, duration_s: int, writes: tuple[int, int]) -> int:
        print()
        print("| operation | requests | req/s | p50 | p99 | errors | fields over a quota |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in MIX:
            timings = self.timings[name]
            seconds = sorted(timings.seconds)
            if not seconds:
                continue
            p50 = statistics.median(seconds) * 1000
            p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))] * 1000
            print(
                f"| {name} | {len(seconds)} | {len(seconds) / duration_s:.1f} | {p50:.0f} ms "
                f"| {p99:.0f} ms | {timings.errors} | {timings.limited} |"
            )
        stored, distinct = writes
        quota = SOCIAL_BURST + SOCIAL_QUOTA_PER_S * self.social_elapsed_s
        checks = {
            "writes": (
                stored == distinct == len(self.keys) and self.split_answers == 0,
                f"{len(self.keys)} keys acknowledged, {stored} campaigns stored "
                f"({distinct} distinct), {self.split_answers} keys answered differently",
            ),
            "budget": (
                self.budget_admitted == BUDGET,
                f"{self.budget_admitted} points admitted of a budget of {BUDGET} "
                f"({self.budget_refused} requests THROTTLED)",
            ),
            "consent": (
                self.stale_reads == 0 and self.consent_reads > 0,
                f"{self.stale_reads} of {self.consent_reads} reads after a withdrawal served the "
                "email",
            ),
            "quota": (
                self.social_calls <= quota + 1,
                f"{self.social_calls} social API calls in {self.social_elapsed_s:.1f} s; "
                f"the quota allows {quota:.0f}",
            ),
        }
        print()
        for name, (held, detail) in checks.items():
            print(f"{name}: {'held' if held else 'BROKEN'}: {detail}")
        return 0 if all(held for held, _ in checks.values()) else 1


GRANT = """mutation ($id: ID!) { grantConsent(contactId: $id, purpose: "campaign_management",
  source: "bench", evidence: "bench") { status } }"""
WITHDRAW = """mutation ($id: ID!) {
  withdrawConsent(contactId: $id, purpose: "campaign_management") { status } }"""
CREATE = """mutation ($name: String!) {
  createCampaign(input: {name: $name, brand: "Bench"}) { id } }"""


async def stored_writes(engine_url: str) -> tuple[int, int]:
    """The bench's campaigns in the store, and how many distinct names they have."""
    engine = create_async_engine(engine_url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT count(*), count(DISTINCT name) FROM campaigns "
                        "WHERE name LIKE 'bench-write-%'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return int(row[0]), int(row[1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/replicas.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--replicas", type=_positive, default=2, help="hub processes (2)")
    parser.add_argument("--duration-s", type=_positive, default=30, help="seconds of load (30)")
    parser.add_argument("--workers", type=_positive, default=12, help="concurrent clients (12)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "HUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
