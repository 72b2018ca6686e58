"""Cost budgets: the in-process bucket on an injected clock, the Redis bucket across replicas."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from hub.budget import (
    BucketResult,
    MemoryBucket,
    RedisBucket,
    SharedBucket,
    create_bucket,
    retry_after_s,
)
from tests.redis_server import running_redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("cost", "available", "rate", "seconds"),
    [
        (10, 10.0, 1.0, 0),
        (10, 12.5, 1.0, 0),
        (10, 9.0, 1.0, 1),
        (10, 9.5, 2.0, 1),
        (10, 0.0, 3.0, 4),
        (1, 0.001, 0.01, 100),
        (100, 40.0, 20.0, 3),
    ],
)
def test_retry_after_is_the_whole_seconds_until_the_points_are_back(
    cost: int, available: float, rate: float, seconds: int
) -> None:
    assert retry_after_s(cost, available, rate) == seconds


async def test_a_new_client_starts_with_a_full_bucket_and_takes_from_it() -> None:
    bucket = MemoryBucket(clock=Clock())
    first = await bucket.take("app", 30, size=100, restore_rate_per_s=10)
    second = await bucket.take("app", 70, size=100, restore_rate_per_s=10)
    assert (first, second) == (BucketResult(True, 70, 0), BucketResult(True, 0, 0))


async def test_a_take_larger_than_what_is_left_is_refused_and_takes_nothing() -> None:
    bucket = MemoryBucket(clock=Clock())
    await bucket.take("app", 95, size=100, restore_rate_per_s=2)
    refused = await bucket.take("app", 10, size=100, restore_rate_per_s=2)
    # 5 left, 5 missing at 2 per second: 2.5 s, announced as 3.
    assert refused == BucketResult(False, 5, 3)
    assert await bucket.take("app", 5, size=100, restore_rate_per_s=2) == BucketResult(True, 0, 0)


async def test_the_bucket_refills_at_the_restore_rate_up_to_its_size() -> None:
    clock = Clock()
    bucket = MemoryBucket(clock=clock)
    await bucket.take("app", 100, size=100, restore_rate_per_s=10)
    clock.now += 2.5
    assert await bucket.take("app", 26, size=100, restore_rate_per_s=10) == BucketResult(
        False, 25, 1
    )
    assert await bucket.take("app", 25, size=100, restore_rate_per_s=10) == BucketResult(True, 0, 0)
    clock.now += 3600
    assert await bucket.take("app", 1, size=100, restore_rate_per_s=10) == BucketResult(True, 99, 0)


async def test_retry_after_is_right_when_waited_for() -> None:
    clock = Clock()
    bucket = MemoryBucket(clock=clock)
    await bucket.take("app", 100, size=100, restore_rate_per_s=3)
    refused = await bucket.take("app", 10, size=100, restore_rate_per_s=3)
    assert refused.retry_after_s == 4
    clock.now += refused.retry_after_s - 1
    assert not (await bucket.take("app", 10, size=100, restore_rate_per_s=3)).allowed
    clock.now += 1
    assert (await bucket.take("app", 10, size=100, restore_rate_per_s=3)).allowed


async def test_a_refund_gives_points_back_but_never_beyond_the_size() -> None:
    bucket = MemoryBucket(clock=Clock())
    await bucket.take("app", 80, size=100, restore_rate_per_s=1)
    assert await bucket.refund("app", 50, size=100, restore_rate_per_s=1) == 70
    assert await bucket.take("app", 70, size=100, restore_rate_per_s=1) == BucketResult(True, 0, 0)
    assert await bucket.refund("app", 500, size=100, restore_rate_per_s=1) == 100
    assert await bucket.take("app", 101, size=100, restore_rate_per_s=1) == BucketResult(
        False, 100, 1
    )


async def test_clients_have_buckets_of_their_own() -> None:
    bucket = MemoryBucket(clock=Clock())
    await bucket.take("greedy", 100, size=100, restore_rate_per_s=1)
    assert (await bucket.take("modest", 100, size=100, restore_rate_per_s=1)).allowed
    assert not (await bucket.take("greedy", 1, size=100, restore_rate_per_s=1)).allowed


async def test_full_buckets_are_forgotten_and_behave_as_new() -> None:
    clock = Clock()
    bucket = MemoryBucket(clock=clock)
    for n in range(MemoryBucket._SWEEP_EVERY - 1):
        await bucket.take(f"client-{n}", 1, size=10, restore_rate_per_s=1)
    clock.now += 2
    await bucket.take("last", 1, size=10, restore_rate_per_s=1)
    assert len(bucket._state) == 1
    assert await bucket.take("client-0", 10, size=10, restore_rate_per_s=1) == BucketResult(
        True, 0, 0
    )


async def test_create_bucket_picks_the_backend_from_the_cache_url() -> None:
    memory = create_bucket("memory://")
    assert isinstance(memory, MemoryBucket)
    redis = create_bucket("redis://127.0.0.1:6379/0", replicas=4)
    assert isinstance(redis, SharedBucket)
    assert redis.share(100, 2.0) == (25, 0.5)
    assert redis.share(3, 2.0) == (1, 0.5)
    await redis.aclose()
    with pytest.raises(ValueError, match="unknown cache URL 'mem://'"):
        create_bucket("mem://")


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[RedisBucket, RedisBucket, Redis, str]]:
    """Two buckets on two connections, as two hub replicas would have, on a fresh prefix."""
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; Redis bucket tests need a server")
    prefix = f"test:budget:{uuid.uuid4().hex}:"
    one = RedisBucket.from_url(url, prefix=prefix)
    two = RedisBucket.from_url(url, prefix=prefix)
    admin = Redis.from_url(url)
    try:
        yield one, two, admin, prefix
    finally:
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()
        await one.aclose()
        await two.aclose()


async def test_two_replicas_admit_exactly_what_the_bucket_holds(
    replicas: tuple[RedisBucket, RedisBucket, Redis, str],
) -> None:
    one, two, _, _ = replicas
    # 100 points, refilled at one point per 100 s: nothing comes back during the test.
    takes = [
        (one if n % 2 else two).take("app", 1, size=100, restore_rate_per_s=0.01)
        for n in range(200)
    ]
    results = await asyncio.gather(*takes)
    admitted = [result for result in results if result.allowed]
    refused = [result for result in results if not result.allowed]
    assert len(admitted) == 100
    assert sorted(result.available for result in admitted) == list(range(100))
    # Less than a hundredth of a point has come back: the missing point takes 100 s.
    assert {(result.available, result.retry_after_s) for result in refused} == {(0, 100)}


async def test_a_redis_refund_is_shared_and_capped_at_the_size(
    replicas: tuple[RedisBucket, RedisBucket, Redis, str],
) -> None:
    one, two, _, _ = replicas
    assert (await one.take("app", 80, size=100, restore_rate_per_s=0.01)).available == 20
    assert await two.refund("app", 50, size=100, restore_rate_per_s=0.01) == 70
    taken = await one.take("app", 70, size=100, restore_rate_per_s=0.01)
    assert (taken.allowed, taken.available) == (True, 0)
    assert await two.refund("app", 500, size=100, restore_rate_per_s=0.01) == 100
    refused = await one.take("app", 101, size=100, restore_rate_per_s=0.01)
    assert (refused.allowed, refused.available, refused.retry_after_s) == (False, 100, 100)


async def test_a_redis_bucket_refills_by_redis_time(
    replicas: tuple[RedisBucket, RedisBucket, Redis, str],
) -> None:
    one, two, _, _ = replicas
    await one.take("app", 10, size=10, restore_rate_per_s=50)
    refused = await two.take("app", 10, size=10, restore_rate_per_s=50)
    assert (refused.allowed, refused.retry_after_s) == (False, 1)
    await asyncio.sleep(0.25)
    assert (await two.take("app", 10, size=10, restore_rate_per_s=50)).allowed


async def test_a_redis_bucket_expires_once_it_would_be_full_again(
    replicas: tuple[RedisBucket, RedisBucket, Redis, str],
) -> None:
    one, _, admin, prefix = replicas
    await one.take("app", 30, size=100, restore_rate_per_s=10)
    # 30 missing points at 10 per second: full again after 3 s, kept one more second.
    ttl_ms = await admin.pttl(f"{prefix}app")
    assert 3000 < ttl_ms <= 4000


async def test_while_redis_is_away_replicas_admit_their_shares_and_charge_them_when_it_is_back(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as server:
        buckets = [create_bucket(server.url, namespace="lost", replicas=2) for _ in range(2)]
        one, two = buckets
        assert isinstance(one, SharedBucket) and isinstance(two, SharedBucket)
        for shared in (one, two):
            shared.link.probe_interval_s = 0.05
        size, rate = 100, 0.01  # nothing comes back during the test

        async def take_all(count: int) -> list[bool]:
            results = [
                await (one if n % 2 else two).take("app", 1, size=size, restore_rate_per_s=rate)
                for n in range(count)
            ]
            return [result.allowed for result in results]

        assert await take_all(10) == [True] * 10
        server.stop()
        away = await take_all(200)
        # Each replica admits its share, half the budget, whatever the shared bucket held.
        assert away.count(True) == 100
        assert not one.link.is_up and not two.link.is_up
        server.start()  # empty: the shared bucket is full again
        for _ in range(500):
            if one.link.is_up and two.link.is_up:
                break
            await asyncio.sleep(0.01)
        # What the shares admitted was charged: the budget is spent, not admitted twice.
        assert await take_all(10) == [False] * 10
        for bucket in buckets:
            await bucket.aclose()
