"""The metric feed: each listener gets its accounts' days, bounded, here and across replicas."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest

from hub.realtime import MetricFeed, _decode, _encode
from hub.sources.redis_link import RedisLink
from hub.sources.social import MetricRecord


def record(external_id: str, day: int, impressions: int = 10) -> MetricRecord:
    return MetricRecord(external_id, date(2026, 11, day), impressions, 8, 3, 2, 1, 0, 5, 1, 0, 99)


def never() -> None:
    raise AssertionError("no listener should overflow here")


async def test_a_listener_gets_only_the_days_of_the_accounts_it_follows() -> None:
    feed = MetricFeed()
    listener = feed.listen(["a", "b"], max_queued=10, on_overflow=never)
    await feed.publish("c", [record("c", 1)])
    await feed.publish("b", [record("b", 2), record("b", 3)])
    got = [await listener.next(), await listener.next()]
    assert [(r.external_id, r.day.day) for r in got] == [("b", 2), ("b", 3)]
    assert listener.queued == 0


async def test_following_other_accounts_replaces_the_ones_before() -> None:
    feed = MetricFeed()
    listener = feed.listen(["a"], max_queued=10, on_overflow=never)
    listener.follow(["b"])
    await feed.publish("a", [record("a", 1)])
    await feed.publish("b", [record("b", 2)])
    assert (await listener.next()).external_id == "b"
    assert listener.queued == 0
    listener.close()
    assert feed.listeners == 0


async def test_a_listener_past_its_queue_is_dropped_once_and_keeps_nothing() -> None:
    feed = MetricFeed()
    overflows: list[str] = []
    slow = feed.listen(["a"], max_queued=3, on_overflow=lambda: overflows.append("slow"))
    fast = feed.listen(["a"], max_queued=100, on_overflow=never)
    await feed.publish("a", [record("a", day) for day in range(1, 11)])
    await feed.publish("a", [record("a", 11)])
    assert overflows == ["slow"]
    assert slow.overflowed and slow.queued == 0
    assert fast.queued == 11  # the others go on getting every day
    assert feed.listeners == 1


def test_a_message_round_trips_and_anything_else_on_the_channel_is_ignored() -> None:
    days = [record("acct-1", 4, impressions=1234)]
    assert _decode(_encode("replica", "acct-1", days)) == ("replica", "acct-1", days)
    for garbage in (
        b"not json",
        b"[]",
        b'{"o": "r", "a": "x"}',
        b'{"o": 1, "a": "x", "d": []}',
        b'{"o": "r", "a": "x", "d": [["2026-11-01", 1, 2]]}',
        b'{"o": "r", "a": "x", "d": [["nope", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}',
        b'{"o": "r", "a": "x", "d": [["2026-11-01", 1, 2, 3, 4, 5, 6, 7, 8, 9, "10"]]}',
        b'{"o": "r", "a": "x", "d": 5}',
    ):
        assert _decode(garbage) is None, garbage


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; replicas share their feed in Redis")
    yield url


async def test_days_reach_the_other_replica_once_through_redis(redis_url: str) -> None:
    namespace = f"hub-test-{uuid.uuid4().hex[:8]}"
    links = [RedisLink.from_url(redis_url), RedisLink.from_url(redis_url)]
    one, two = (MetricFeed(link=link, namespace=namespace) for link in links)
    try:
        for feed in (one, two):
            assert await feed.ready(timeout_s=5)
        here = one.listen(["a"], max_queued=10, on_overflow=never)
        there = two.listen(["a"], max_queued=10, on_overflow=never)
        await one.publish("a", [record("a", 5, impressions=505)])
        async with asyncio.timeout(1):
            arrived = await there.next()
        await asyncio.sleep(0.2)  # time for the message to come back to `one` too
        assert arrived == record("a", 5, impressions=505)
        assert here.queued == 1  # at once, and not a second time from Redis
        await links[0].redis.publish(f"{namespace}:metrics", "garbage")
        await asyncio.sleep(0.1)
        assert there.queued == 0
    finally:
        for feed in (one, two):
            await feed.aclose()
        for link in links:
            await link.aclose()
