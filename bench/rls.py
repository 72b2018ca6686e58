"""What binding each statement to a tenant costs on PostgreSQL (prints figures).

    a new schema, migrated and seeded (1,000 influencers, 60 campaigns, 3 tenants)
      -> the same store reads, interleaved, --reads (2000) of each per run:
           one page of a tenant's campaigns (the autocommit reads engine: bound per checkout)
           a tenant's member counts (an ORM session: bound at its transaction's begin)
         on engines
           superuser, unbound    no binding sent, row-level security bypassed: the baseline
           superuser, bound      the binding sent, the policies still bypassed
           hub role, bound       NOSUPERUSER NOBYPASSRLS: the binding and the policies
         each bound run once with one tenant throughout, once with the tenant changing at
         every read (an autocommit connection sends the binding only when it changed)
      -> per read: p50 and mean, and what the binding adds to the baseline's p50

Needs PostgreSQL (`--database-url`, default `HUB_TEST_DATABASE_URL` or the local server), whose
user can create a role (the hub role, `hub_rls_bench`, made once) and a schema.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from throughput import cpu_model

from hub.policy.rows import RowScope
from hub.settings import Settings
from hub.sources.store import Store
from hub.store import migrate, seed, tenancy
from hub.store.engine import create_engine

ROLE = "hub_rls_bench"
TENANTS = ("acme", "globex", "initech")
Read = Callable[[Store, str], Awaitable[object]]
CAMPAIGNS: dict[str, list[str]] = {}
"""Each tenant's campaign ids, read once the store is seeded."""


async def _campaign_page(store: Store, tenant: str) -> object:
    scope = RowScope(tenant=tenant, campaigns=None)
    return await store.campaign_page(scope, status=None, first=20, after=None)


async def _member_counts(store: Store, tenant: str) -> object:
    scope = RowScope(tenant=tenant, campaigns=None)
    return await store.member_counts(scope, CAMPAIGNS[tenant])


READS: dict[str, Read] = {
    "campaign page (autocommit reads)": _campaign_page,
    "member counts (ORM session)": _member_counts,
}


def _store(settings: Settings, *, bound: bool) -> Store:
    engine, reads = create_engine(settings), create_engine(settings, reads=True)
    if not bound:
        event.remove(engine.sync_engine, "begin", tenancy._bind_transaction)
        event.remove(reads.sync_engine, "checkout", tenancy._bind_checkout)
    return Store(engine, reads=reads)


async def _timed(store: Store, read: Read, tenants: list[str]) -> list[float]:
    times: list[float] = []
    for tenant in tenants:
        tenancy.bind_tenant(tenant)
        started = time.perf_counter()
        await read(store, tenant)
        times.append(time.perf_counter() - started)
    return times


async def run(database_url: str, reads: int) -> None:
    url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    schema = f"bench_rls_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url)
    async with admin.begin() as connection:
        await connection.execute(
            text(
                f"DO $$ BEGIN CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOBYPASSRLS; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            )
        )
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.execute(text(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO {ROLE}'))
    role_url = make_url(url).set(username=ROLE).render_as_string(hide_password=False)
    superuser = Settings(database_url=url, database_schema=schema)
    role = Settings(database_url=role_url, database_schema=schema)
    stores: dict[str, Store] = {}
    try:
        owner = create_engine(role)  # the hub role owns the tables, as `hub migrate` would
        await migrate.upgrade(owner)
        plan = seed.SeedPlan(influencers=1000, campaigns=60, contacts_per_tenant=40)
        await seed.seed(owner, plan)
        await owner.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'SET search_path TO "{schema}"'))
            for tenant, campaign_id in await connection.execute(
                text("SELECT tenant_id, id FROM campaigns")
            ):
                CAMPAIGNS.setdefault(tenant, []).append(campaign_id)
        stores = {
            "superuser, unbound": _store(superuser, bound=False),
            "superuser, bound": _store(superuser, bound=True),
            "hub role, bound": _store(role, bound=True),
        }
        one = ["acme"] * reads
        changing = list(itertools.islice(itertools.cycle(TENANTS), reads))
        runs = [("superuser, unbound", one, "—")]
        runs += [(name, one, "one") for name in stores if name != "superuser, unbound"]
        runs += [(name, changing, "every read") for name in stores if name != "superuser, unbound"]
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores; {reads} reads per run")
        for label, read in READS.items():
            for store in stores.values():  # warm: connections open, statements prepared
                await _timed(store, read, changing[:50])
            times: dict[tuple[str, str], list[float]] = {}
            for _round in range(3):  # interleaved, so that drift is shared
                for name, tenants, change in runs:
                    part = await _timed(stores[name], read, tenants[: reads // 3])
                    times.setdefault((name, change), []).extend(part)
            base = statistics.median(times[("superuser, unbound", "—")])
            print(f"\n{label}")
            print("| engine | tenant changes | p50 | mean | binding adds (p50) |")
            print("| --- | --- | --- | --- | --- |")
            for (name, change), values in times.items():
                p50 = statistics.median(values)
                added = "" if change == "—" else f"{(p50 - base) * 1e6:+.0f} µs"
                print(
                    f"| {name} | {change} | {p50 * 1e6:.0f} µs "
                    f"| {statistics.fmean(values) * 1e6:.0f} µs | {added} |"
                )
    finally:
        for store in stores.values():
            await store.engine.dispose()
            await store.reads.dispose()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "HUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.database_url, args.reads))


if __name__ == "__main__":
    main()
