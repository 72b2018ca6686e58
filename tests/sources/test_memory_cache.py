"""The in-process cache: TTL, stale-while-revalidate, tags, single flight, bounded bytes."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from functools import partial
from typing import Any

import pytest

from hub.errors import SourceUnavailable
from hub.memo import Held, IdentityMemo
from hub.observability.metrics import Metrics
from hub.sizes import estimate_bytes
from hub.sources.cache import subject_tag
from hub.sources.memory_cache import MemoryCache
from tests.sources.fakes import FakeClock


class Loader:
    """Records the batches it is asked for; `gate`, when set, holds every load until opened."""

    def __init__(self, *, version: str = "v1", fail: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.version = version
        self.fail = fail
        self.gate: asyncio.Event | None = None

    async def __call__(self, keys: list[str]) -> dict[str, Any]:
        self.batches.append(keys)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {key: {"key": key, "version": self.version} for key in keys if key != "crm:gone"}


async def settle() -> None:
    """Let background tasks and their done-callbacks run."""
    for _ in range(5):
        await asyncio.sleep(0)


def strings(items: list[int]) -> list[str]:
    return [str(n) for n in items]


def value(key: str, version: str = "v1") -> dict[str, str]:
    return {"key": key, "version": version}


async def test_an_entry_is_fresh_for_ttl_s_then_stale_for_stale_ttl_s_then_gone() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"crm:a": value("a")}, ttl_s=10, stale_ttl_s=5)
    entry = (await cache.get_many(["crm:a"]))["crm:a"]
    assert entry.value == value("a")
    assert (entry.fresh_until - clock.now_s, entry.stale_until - clock.now_s) == (10, 15)
    clock.advance(10)
    entry = (await cache.get_many(["crm:a"]))["crm:a"]
    assert not entry.is_fresh(clock.time())
    clock.advance(5)
    assert await cache.get_many(["crm:a"]) == {}


async def test_load_many_calls_the_loader_once_with_only_the_missing_keys() -> None:
    cache = MemoryCache(clock=FakeClock())
    await cache.set_many({"crm:a": value("crm:a", "cached")}, ttl_s=10, stale_ttl_s=5)
    loader = Loader()
    found = await cache.load_many(
        ["crm:a", "crm:b", "crm:gone", "crm:c", "crm:b"], loader, ttl_s=10, stale_ttl_s=5
    )
    assert found == {
        "crm:a": value("crm:a", "cached"),
        "crm:b": value("crm:b"),
        "crm:c": value("crm:c"),
    }
    assert loader.batches == [["crm:b", "crm:gone", "crm:c"]]
    again = await cache.load_many(["crm:a", "crm:b", "crm:gone"], loader, ttl_s=10, stale_ttl_s=5)
    assert list(again) == ["crm:a", "crm:b"]
    assert loader.batches[1:] == [["crm:gone"]]


async def test_concurrent_loads_of_the_same_cold_keys_call_the_loader_once() -> None:
    cache = MemoryCache(clock=FakeClock())
    loader = Loader()
    loader.gate = asyncio.Event()
    first = asyncio.create_task(
        cache.load_many(["crm:a", "crm:b"], loader, ttl_s=10, stale_ttl_s=5)
    )
    second = asyncio.create_task(
        cache.load_many(["crm:b", "crm:c"], loader, ttl_s=10, stale_ttl_s=5)
    )
    await asyncio.sleep(0)
    loader.gate.set()
    assert await first == {"crm:a": value("crm:a"), "crm:b": value("crm:b")}
    assert await second == {"crm:b": value("crm:b"), "crm:c": value("crm:c")}
    assert loader.batches == [["crm:a", "crm:b"], ["crm:c"]]


async def test_a_failed_load_reaches_every_waiting_caller_and_is_not_cached() -> None:
    cache = MemoryCache(clock=FakeClock())
    loader = Loader(fail=SourceUnavailable("crm"))
    loader.gate = asyncio.Event()
    calls = [cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5) for _ in range(2)]
    tasks = [asyncio.create_task(call) for call in calls]
    await asyncio.sleep(0)
    loader.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(result) for result in results] == [SourceUnavailable, SourceUnavailable]
    loader.fail = None
    assert await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5) == {
        "crm:a": value("crm:a")
    }
    assert len(loader.batches) == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_load_others_await() -> None:
    cache = MemoryCache(clock=FakeClock())
    loader = Loader()
    loader.gate = asyncio.Event()
    impatient = asyncio.create_task(cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5))
    patient = asyncio.create_task(cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=5))
    await asyncio.sleep(0)
    impatient.cancel()
    loader.gate.set()
    assert await patient == {"crm:a": value("crm:a")}
    assert impatient.cancelled()
    assert loader.batches == [["crm:a"]]


async def test_a_stale_entry_is_served_while_one_background_refresh_runs() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"crm:a": value("crm:a", "old")}, ttl_s=10, stale_ttl_s=60)
    clock.advance(11)
    loader = Loader(version="new")
    loader.gate = asyncio.Event()
    for _ in range(3):
        found = await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=60)
        assert found == {"crm:a": value("crm:a", "old")}
    await asyncio.sleep(0)
    assert loader.batches == [["crm:a"]]
    loader.gate.set()
    await settle()
    found = await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=60)
    assert found == {"crm:a": value("crm:a", "new")}
    assert loader.batches == [["crm:a"]]
    await cache.aclose()


async def test_a_failed_background_refresh_keeps_serving_the_stale_entry() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"crm:a": value("crm:a", "old")}, ttl_s=10, stale_ttl_s=60)
    clock.advance(11)
    loader = Loader(fail=SourceUnavailable("crm"))
    assert await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=60) == {
        "crm:a": value("crm:a", "old")
    }
    await settle()
    assert await cache.load_many(["crm:a"], loader, ttl_s=10, stale_ttl_s=60) == {
        "crm:a": value("crm:a", "old")
    }
    await settle()
    assert len(loader.batches) == 2


async def test_past_stale_until_an_entry_is_a_miss_that_waits_for_the_loader() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"crm:a": value("crm:a", "old")}, ttl_s=10, stale_ttl_s=5)
    clock.advance(15)
    found = await cache.load_many(["crm:a"], Loader(version="new"), ttl_s=10, stale_ttl_s=5)
    assert found == {"crm:a": value("crm:a", "new")}


async def test_purge_tag_deletes_every_entry_of_that_subject_only() -> None:
    cache = MemoryCache(clock=FakeClock())
    await cache.set_many(
        {"crm:a": value("a"), "crm:b": value("b"), "social:c": value("c")},
        ttl_s=10,
        stale_ttl_s=5,
        tags={
            "crm:a": [subject_tag("con_1")],
            "crm:b": [subject_tag("con_2")],
            "social:c": [subject_tag("con_1"), "influencer:inf_1"],
        },
    )
    assert await cache.purge_tag(subject_tag("con_1")) == 2
    assert list(await cache.get_many(["crm:a", "crm:b", "social:c"])) == ["crm:b"]
    assert await cache.purge_tag(subject_tag("con_1")) == 0
    assert await cache.purge_tag("influencer:inf_1") == 0


async def test_a_load_that_raced_a_purge_is_returned_but_not_cached() -> None:
    cache = MemoryCache(clock=FakeClock())
    loader = Loader()
    loader.gate = asyncio.Event()
    load = asyncio.create_task(
        cache.load_many(
            ["crm:a"], loader, ttl_s=10, stale_ttl_s=5, tags_for=lambda key, _: ["subject:a"]
        )
    )
    await asyncio.sleep(0)
    await cache.purge_tag("subject:a")
    loader.gate.set()
    assert await load == {"crm:a": value("crm:a")}
    assert await cache.get_many(["crm:a"]) == {}


async def test_a_published_purge_drops_local_entries_and_reaches_every_feed() -> None:
    cache = MemoryCache(clock=FakeClock())
    await cache.set_many({"crm:a": 1}, ttl_s=10, stale_ttl_s=5, tags={"crm:a": ["subject:a"]})
    feed = await cache.subscribe_purges()
    await cache.publish_purge("subject:a")
    await cache.purge_tag("subject:b")
    assert await cache.get_many(["crm:a"]) == {}
    assert [await anext(feed), await anext(feed)] == ["subject:a", "subject:b"]
    await feed.aclose()
    await cache.purge_tag("subject:c")
    assert [tag async for tag in feed] == []


async def test_lookups_are_counted_as_hits_stale_and_misses_per_source() -> None:
    clock = FakeClock()
    registry = Metrics()
    cache = MemoryCache(clock=clock, metrics=registry)
    await cache.set_many({"crm:a": 1}, ttl_s=10, stale_ttl_s=60)
    await cache.set_many({"crm:b": 2}, ttl_s=1, stale_ttl_s=60)
    clock.advance(5)
    await cache.load_many(["crm:a", "crm:b", "crm:c", "social:d"], Loader(), ttl_s=1, stale_ttl_s=1)
    counts = {
        (source, result): registry.value("hub_cache_lookups_total", source=source, result=result)
        for source in ("crm", "social")
        for result in ("hit", "stale", "miss")
    }
    assert counts == {
        ("crm", "hit"): 1,
        ("crm", "stale"): 1,
        ("crm", "miss"): 1,
        ("social", "hit"): 0,
        ("social", "stale"): 0,
        ("social", "miss"): 1,
    }
    await cache.aclose()


@pytest.mark.parametrize("keys", [[], ["crm:a"]])
async def test_load_many_of_cached_or_no_keys_never_calls_the_loader(keys: list[str]) -> None:
    cache = MemoryCache(clock=FakeClock())
    await cache.set_many({"crm:a": 1}, ttl_s=10, stale_ttl_s=5)
    loader = Loader()
    assert await cache.load_many(keys, loader, ttl_s=10, stale_ttl_s=5) == dict.fromkeys(keys, 1)
    assert loader.batches == []


async def test_the_cache_holds_at_most_max_bytes_dropping_the_least_recently_used() -> None:
    cache = MemoryCache(max_bytes=64 * 1024, clock=FakeClock())
    keys = [f"crm:{n:02}" for n in range(100)]
    for key in keys:
        await cache.set_many({key: "x" * 2000}, ttl_s=10, stale_ttl_s=5, tags={key: ["t"]})
        await cache.get_many(["crm:00"])  # kept recent, so never the one evicted
        if key == "crm:00":
            one = cache.entries.nbytes
            assert 2000 < one < 3000  # the value, its key, its tag and holding an entry
    fits = 64 * 1024 // one
    assert sorted(await cache.get_many(keys)) == ["crm:00", *keys[101 - fits :]]
    assert cache.entries.nbytes == fits * one <= cache.entries.max_bytes
    assert await cache.purge_tag("t") == fits  # evicted entries left the tag index too
    assert cache.entries.nbytes == 0


async def test_an_entry_larger_than_a_sixteenth_of_the_bound_is_not_kept() -> None:
    cache = MemoryCache(max_bytes=32 * 1024, clock=FakeClock())
    await cache.set_many({"crm:small": "x" * 1000}, ttl_s=10, stale_ttl_s=5)
    await cache.set_many({"crm:large": ["x" * 100] * 40}, ttl_s=10, stale_ttl_s=5)
    assert list(await cache.get_many(["crm:small", "crm:large"])) == ["crm:small"]
    assert cache.entries.nbytes < 2 * 1024


async def test_expired_entries_leave_on_the_next_write_without_being_read() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set_many({"crm:new": "n"}, ttl_s=10, stale_ttl_s=5)
    one = cache.entries.nbytes
    windows = {f"social:metric-rows:g:a@{n}": [[n, n + 1000]] * 365 for n in range(50)}
    await cache.set_many(windows, ttl_s=1, stale_ttl_s=1)
    assert len(cache.entries) == 51
    clock.advance(2)
    await cache.set_many({"crm:new": "n"}, ttl_s=10, stale_ttl_s=5)
    assert (len(cache.entries), cache.entries.nbytes) == (1, one)


async def test_what_memos_derive_from_an_entry_counts_against_the_bound_and_leaves_with_it() -> (
    None
):
    cache = MemoryCache(max_bytes=4 * 1024 * 1024, clock=FakeClock())
    memo: IdentityMemo[list[str]] = IdentityMemo(100)
    keys = [f"social:{n:02}" for n in range(40)]
    for key in keys:
        rows = Held(range(10**6, 10**6 + 1000))
        await cache.set_many({key: rows}, ttl_s=10, stale_ttl_s=5, tags={key: ["t"]})
    assert len(cache.entries) == 40  # 40 KB each: they all fit
    one = cache.entries.nbytes // 40
    for key in keys:
        found = await cache.get_many([key])
        if key in found:  # those read last may have made room for the others' values
            derived = memo.get((found[key].value,), partial(strings, found[key].value))
    each = one + estimate_bytes(derived)  # with its 73 KB of strings: 37 fit
    del rows, found, derived
    kept = sorted(await cache.get_many(keys))
    assert 30 < len(kept) < 40
    assert "social:00" not in kept
    assert cache.entries.nbytes == len(kept) * each <= cache.entries.max_bytes
    assert len(memo) == len(kept)  # the values derived from evicted entries went with them
    await cache.purge_tag("t")
    assert (len(memo), cache.entries.nbytes) == (0, 0)


async def test_an_entry_whose_derived_values_outgrow_its_share_is_dropped_with_them() -> None:
    cache = MemoryCache(max_bytes=1024 * 1024, clock=FakeClock())
    memo: IdentityMemo[list[str]] = IdentityMemo(8)
    await cache.set_many({"social:a": Held(range(10**6, 10**6 + 100))}, ttl_s=10, stale_ttl_s=5)
    held = (await cache.get_many(["social:a"]))["social:a"].value
    memo.get((held,), lambda: ["x" * 100] * 2000)  # 120 KB of strings: over 64 KiB
    assert (len(cache.entries), cache.entries.nbytes) == (0, 0)
    memo.get((held,), list)  # charges to a dropped entry change nothing
    assert cache.entries.nbytes == 0


async def test_clearing_forgets_every_entry_and_what_was_charged_to_them() -> None:
    cache = MemoryCache(clock=FakeClock())
    await cache.set_many({"social:a": Held([1]), "crm:b": 2}, ttl_s=10, stale_ttl_s=5)
    (entry,) = (await cache.get_many(["social:a"])).values()
    cache.entries.clear()
    entry.value.owner.charge(1000)
    assert (len(cache.entries), cache.entries.nbytes) == (0, 0)


async def test_rewriting_the_same_keys_keeps_the_deadline_heap_small() -> None:
    cache = MemoryCache(clock=FakeClock())
    for n in range(10_000):
        await cache.set_many({f"crm:{n % 10}": n}, ttl_s=10, stale_ttl_s=5)
    assert len(cache.entries) == 10
    assert len(cache.entries._deadlines) <= 2 * 10 + 64


@pytest.mark.parametrize("tagged", [False, True])
async def test_the_accounted_bytes_are_within_a_fifth_of_what_holding_entries_allocates(
    tagged: bool,
) -> None:
    cache = MemoryCache(clock=FakeClock())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(5000):
            key = f"crm:contact:t=acme:con_{n:08}"
            tags = {key: [subject_tag(f"con_{n:08}")]} if tagged else None
            await cache.set_many({key: {"n": 10**6 + n}}, ttl_s=10, stale_ttl_s=5, tags=tags)
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 * allocated <= cache.entries.nbytes <= 1.2 * allocated
