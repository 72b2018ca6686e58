"""The Redis cache as two replicas see it: shared entries, purges, pub/sub, single flight."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from hub.errors import SourceUnavailable
from hub.sources import redis_cache
from hub.sources.cache import DEFAULT_MAX_BYTES, PurgeFeed, create_cache, subject_tag
from hub.sources.redis_cache import RedisCache
from tests.redis_server import RedisServer, running_redis
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


async def eventually(check: Callable[[], Awaitable[bool]], *, within_s: float = 1.0) -> None:
    """Wait up to `within_s` for something another task or replica does."""
    for _ in range(int(within_s * 100)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {within_s} s")


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
    assert len(other.local) == 2
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


async def test_an_unreachable_redis_keeps_untagged_entries_in_process_purges_fail_loudly() -> None:
    cache = create_cache("redis://127.0.0.1:1/0", namespace="down", clock=FakeClock())
    loader = Loader()
    for _ in range(2):
        found = await cache.load_many(
            ["crm:a", "crm:b"], loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged
        )
        assert found == {key: {"key": key, "version": "v1"} for key in ("crm:a", "crm:b")}
    # The tagged entry (a subject's data) is loaded again each time; the other is kept.
    assert loader.batches == [["crm:a", "crm:b"], ["crm:a"]]
    with pytest.raises(SourceUnavailable) as caught:
        await cache.purge_tag(TAG)
    assert caught.value.extensions["source"] == "cache"
    await cache.aclose()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A Redis of this test's own, to stop and start again; replicas resubscribe quickly."""
    monkeypatch.setattr(redis_cache, "RESUBSCRIBE_S", 0.05)
    with running_redis(tmp_path) as running:
        yield running


def on_server(server: RedisServer, clock: FakeClock, *, namespace: str = "lost") -> RedisCache:
    cache = create_cache(server.url, namespace=namespace, clock=clock)
    assert isinstance(cache, RedisCache)
    cache.link.probe_interval_s = 0.05
    return cache


async def status_is(cache: RedisCache, wanted: str) -> None:
    async def reached() -> bool:
        return cache.status() == wanted

    await eventually(reached, within_s=10)


async def test_while_redis_is_away_no_tagged_entry_is_kept_in_process_until_it_is_back(
    server: RedisServer,
) -> None:
    clock = FakeClock()
    cache = on_server(server, clock)
    await (await cache.subscribe_purges()).aclose()
    loader = Loader()
    keys = ["crm:a", "crm:b"]
    await cache.load_many(keys, loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    assert len(cache.local) == 2
    server.stop()
    await status_is(cache, "unreachable")
    assert len(cache.local) == 0
    for _ in range(2):
        found = await cache.load_many(keys, loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
        assert sorted(found) == keys
    # crm:a holds a subject's data: loaded each time, never kept while purges go unheard.
    assert loader.batches == [keys, keys, ["crm:a"]]
    assert list(cache.local.get_many(keys)) == ["crm:b"]
    server.start()
    await status_is(cache, "ok")
    assert len(cache.local) == 0
    await cache.load_many(keys, loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    await cache.load_many(keys, loader, ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    assert loader.batches[3:] == [keys]  # the restarted Redis was empty; then shared again
    assert sorted(cache.local.get_many(keys)) == keys
    await cache.aclose()


async def cut_off_with_entries(server: RedisServer) -> tuple[RedisCache, RedisCache]:
    """Replica `one` stored crm:a (tagged) and crm:b, then lost Redis, which keeps them."""
    clock = FakeClock()
    one, other = on_server(server, clock), on_server(server, clock)
    await one.load_many(["crm:a", "crm:b"], Loader(), ttl_s=10, stale_ttl_s=5, tags_for=tagged)
    server.stop(keep_data=True)
    await status_is(one, "unreachable")
    return one, other


async def test_a_purge_made_while_redis_is_away_reaches_every_replica_when_it_is_back(
    server: RedisServer,
) -> None:
    one, other = await cut_off_with_entries(server)
    keys = ["crm:a", "crm:b"]
    with pytest.raises(SourceUnavailable):
        await one.purge_tag(TAG)
    server.start()
    await status_is(one, "ok")
    await status_is(other, "ok")
    assert list(await other.get_many(keys)) == ["crm:b"]
    await one.aclose()
    await other.aclose()


async def test_past_the_bound_of_pending_purges_every_shared_entry_goes_when_redis_is_back(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_cache, "MAX_PENDING_PURGES", 2)
    one, other = await cut_off_with_entries(server)
    keys = ["crm:a", "crm:b"]
    for n in range(3):
        with pytest.raises(SourceUnavailable):
            await one.purge_tag(subject_tag(f"con_{n + 10}"))
    server.start()
    assert sorted(await other.get_many(keys)) == keys  # the entries survived the restart
    await status_is(one, "ok")
    assert await other.get_many(keys) == {}
    await one.aclose()
    await other.aclose()


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
