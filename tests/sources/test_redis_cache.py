"""The Redis cache as two replicas see it: shared entries, purges, pub/sub, single flight."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from hub.errors import SourceUnavailable
from hub.sources.cache import DEFAULT_MAX_BYTES, PurgeFeed, create_cache, subject_tag
from hub.sources.redis_cache import RedisCache
from tests.sources.fakes import FakeClock

MakeReplica = Callable[..., RedisCache]
TAG = subject_tag("con_1")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; Redis cache tests need a server")
    return url


@pytest.fixture
async def replica(redis_url: str) -> AsyncIterator[MakeReplica]:
    """`replica(clock, local_ttl_s=..., max_bytes=...)`: a cache in this test's own namespace,
    like another hub process; every key of the namespace is deleted afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    made: list[RedisCache] = []

    def make(
        clock: FakeClock, *, local_ttl_s: float = 5.0, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> RedisCache:
        cache = create_cache(
            redis_url,
            namespace=namespace,
            clock=clock,
            local_ttl_s=local_ttl_s,
            max_bytes=max_bytes,
        )
        assert isinstance(cache, RedisCache)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()
    raw = Redis.from_url(redis_url)
    keys = [key async for key in raw.scan_iter(match=f"{namespace}:*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


class Loader:
    def __init__(self, version: str = "v1") -> None:
        self.batches: list[list[str]] = []
        self.version = version
        self.gate: asyncio.Event | None = None

    async def __call__(self, keys: list[str]) -> dict[str, Any]:
        self.batches.append(keys)
        if self.gate is not None:
            await self.gate.wait()
        return {key: {"key": key, "version": self.version} for key in keys}


def tagged(key: str, _value: Any) -> list[str]:
    return [TAG] if key.endswith(":a") else []


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait up to a second for something another task or replica does."""
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within a second")


async def next_tag(feed: PurgeFeed) -> str:
    async with asyncio.timeout(1.0):
        return await anext(feed)


async def test_replicas_share_entries_with_their_deadlines(replica: MakeReplica) -> None:
    clock = FakeClock()
    one, other = replica(clock), replica(clock)
    await one.set_many({"crm:a": {"n": 1}}, ttl_s=10, stale_ttl_s=5, tags={"crm:a": [TAG]})
    entry = (await other.get_many(["crm:a", "crm:b"]))["crm:a"]
    assert entry.value == {"n": 1}
    assert (entry.fresh_until, entry.stale_until) == (clock.now_s + 10, clock.now_s + 15)
    assert entry.tags == (TAG,)


async def test_a_purge_on_one_replica_deletes_the_entry_for_every_replica(
    replica: MakeReplica,
) -> None:
    clock = FakeClock()
    one, other, without_local = replica(clock), replica(clock), replica(clock, local_ttl_s=0)
    feed = await other.subscribe_purges()
    loader = Loader()
    await one.load_many(["crm:a", "crm:b"], loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    assert sorted(await other.get_many(["crm:a", "crm:b"])) == ["crm:a", "crm:b"]
    assert other.local is not None and len(other.local) == 2
    assert await one.purge_tag(TAG) == 1
    assert list(await without_local.get_many(["crm:a", "crm:b"])) == ["crm:b"]
    assert await next_tag(feed) == TAG
    assert list(await other.get_many(["crm:a", "crm:b"])) == ["crm:b"]
    assert len(other.local) == 1
    await feed.aclose()


async def test_a_published_purge_drops_the_other_replicas_local_entries(
    replica: MakeReplica,
) -> None:
    clock = FakeClock()
    one, other, without_local = replica(clock), replica(clock), replica(clock, local_ttl_s=0)
    feed = await other.subscribe_purges()
    await one.set_many({"crm:a": 1, "crm:b": 2}, ttl_s=10, stale_ttl_s=5, tags={"crm:a": [TAG]})
    await other.get_many(["crm:a", "crm:b"])
    assert other.local is not None
    assert sorted(other.local.get_many(["crm:a", "crm:b"])) == ["crm:a", "crm:b"]
    await one.publish_purge(TAG)
    assert await next_tag(feed) == TAG
    assert list(other.local.get_many(["crm:a", "crm:b"])) == ["crm:b"]
    # Publishing alone leaves the shared entry: only local copies were dropped.
    assert list(await without_local.get_many(["crm:a"])) == ["crm:a"]
    await feed.aclose()


async def test_concurrent_cold_loads_on_one_replica_call_the_loader_once(
    replica: MakeReplica,
) -> None:
    cache = replica(FakeClock())
    loader = Loader()
    results = await asyncio.gather(
        *(cache.load_many(["crm:a", "crm:b"], loader, ttl_s=10, stale_ttl_s=5) for _ in range(5))
    )
    assert loader.batches == [["crm:a", "crm:b"]]
    assert all(result == results[0] for result in results)
    assert results[0]["crm:b"] == {"key": "crm:b", "version": "v1"}


async def test_a_stale_shared_entry_is_served_while_one_replica_refreshes_it(
    replica: MakeReplica,
) -> None:
    clock = FakeClock()
    one, other = replica(clock), replica(clock)
    await one.load_many(["crm:a"], Loader("old"), ttl_s=10, stale_ttl_s=60)
    clock.advance(11)
    loader = Loader("new")
    found = await other.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=60)
    assert found == {"crm:a": {"key": "crm:a", "version": "old"}}

    async def refreshed() -> bool:
        entry = (await one.get_many(["crm:a"]))["crm:a"]
        return entry.is_fresh(clock.time())

    await eventually(refreshed)
    assert (await one.get_many(["crm:a"]))["crm:a"].value == {"key": "crm:a", "version": "new"}
    assert loader.batches == [["crm:a"]]


async def test_a_load_racing_a_purge_on_another_replica_is_not_stored(
    replica: MakeReplica,
) -> None:
    clock = FakeClock()
    one, other, observer = replica(clock), replica(clock), replica(clock, local_ttl_s=0)
    loader = Loader()
    loader.gate = asyncio.Event()
    load = asyncio.create_task(
        one.load_many(["crm:a", "crm:b"], loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    )
    await asyncio.sleep(0.01)
    clock.advance(0.5)
    await other.purge_tag(TAG)
    loader.gate.set()
    assert sorted(await load) == ["crm:a", "crm:b"]
    assert list(await observer.get_many(["crm:a", "crm:b"])) == ["crm:b"]
    clock.advance(2.0)
    loader.gate = None
    await one.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    assert list(await observer.get_many(["crm:a"])) == ["crm:a"]


async def test_an_unreachable_redis_degrades_to_misses_but_purges_fail_loudly() -> None:
    cache = create_cache("redis://127.0.0.1:1/0", namespace="down", clock=FakeClock())
    loader = Loader()
    for _ in range(2):
        found = await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5)
        assert found == {"crm:a": {"key": "crm:a", "version": "v1"}}
    assert len(loader.batches) == 2
    with pytest.raises(SourceUnavailable) as caught:
        await cache.purge_tag(TAG)
    assert caught.value.extensions["source"] == "cache"
    await cache.aclose()


async def test_the_local_tier_holds_at_most_max_bytes_and_lets_expired_entries_go(
    replica: MakeReplica,
) -> None:
    clock = FakeClock()
    one, other = replica(clock, max_bytes=64 * 1024), replica(clock)
    feed = await one.subscribe_purges()  # the local tier serves only while subscribed
    values = {f"crm:{n:02}": "x" * 2000 for n in range(100)}
    await other.set_many(values, ttl_s=10, stale_ttl_s=5)
    assert len(await one.get_many(list(values))) == 100  # all served, from Redis
    assert one.local is not None
    assert 20 <= len(one.local) <= 25  # 64 KiB of entries of about 2.6 KB each
    assert one.local.nbytes <= 64 * 1024
    assert sorted(one.local.get_many(values)) == list(values)[-len(one.local) :]
    clock.advance(6)  # past `local_ttl_s`, though nothing read them since
    await one.set_many({"crm:new": 1}, ttl_s=10, stale_ttl_s=5)
    assert len(one.local) == 1
    await feed.aclose()
