"""An upstream's rate limit shared by replicas through Redis: together they take one quota."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from hub.sources.ratelimit import RateLimiter
from hub.sources.redis_link import RedisLink, connect_redis
from hub.sources.shared import SharedRateLimiter
from tests.sources.fakes import FakeClock


@pytest.fixture
async def links() -> AsyncIterator[list[RedisLink]]:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; the shared rate limit needs Redis")
    made = [RedisLink(connect_redis(url)) for _ in range(3)]
    yield made
    for link in made:
        await link.aclose()


def limiter(link: RedisLink, key: str, *, rate_per_s: float, burst: int) -> SharedRateLimiter:
    local = RateLimiter(rate_per_s=rate_per_s, burst=burst, clock=FakeClock())
    return SharedRateLimiter(link, key, local)


async def test_three_replicas_together_take_one_burst(links: list[RedisLink]) -> None:
    key = f"test-{uuid.uuid4().hex[:12]}:quota:social"
    replicas = [limiter(link, key, rate_per_s=0.001, burst=5) for link in links]
    taken = await asyncio.gather(
        *(replica.acquire(max_wait_s=0) for replica in replicas for _ in range(6))
    )
    assert sum(taken) == 5  # not three bursts
    await links[0].redis.delete(key)


async def test_callers_beyond_the_burst_wait_their_turn_at_the_shared_rate(
    links: list[RedisLink],
) -> None:
    key = f"test-{uuid.uuid4().hex[:12]}:quota:crm"
    a, b = (limiter(link, key, rate_per_s=20, burst=2) for link in links[:2])
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert all(await asyncio.gather(*(r.acquire() for r in (a, b, a, b, a, b))))
    # Six tokens from a burst of two at 20 a second: the last waits 4 / 20 = 0.2 s.
    assert loop.time() - started >= 0.19
    await links[0].redis.delete(key)


async def test_while_redis_is_unreachable_each_replica_keeps_its_local_bucket(
    links: list[RedisLink],
) -> None:
    link = links[0]
    key = f"test-{uuid.uuid4().hex[:12]}:quota:discovery"
    shared = limiter(link, key, rate_per_s=0.001, burst=2)
    link.failed("a test")
    taken = [await shared.acquire(max_wait_s=0) for _ in range(4)]
    assert taken == [True, True, False, False]  # the local bucket's burst
    assert await link.redis.exists(key) == 0  # Redis was not asked
