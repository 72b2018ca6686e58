"""The client-side token bucket keeps callers under the quota."""

from __future__ import annotations

import asyncio

from hub.sources.base import SystemClock
from hub.sources.ratelimit import RateLimiter
from tests.sources.fakes import EPOCH_S, FakeClock


async def test_a_burst_passes_at_once_and_the_rest_waits_its_turn() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=4.0, burst=3, clock=clock)
    granted_at = []
    for _ in range(7):
        assert await limiter.acquire()
        granted_at.append(clock.now_s - EPOCH_S)
    assert granted_at == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


async def test_an_idle_bucket_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=10.0, burst=2, clock=clock)
    clock.advance(60.0)
    for _ in range(3):
        await limiter.acquire()
    assert clock.slept == [0.1]


async def test_a_wait_longer_than_max_wait_s_takes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=1, clock=clock)
    assert await limiter.acquire(max_wait_s=0.1)
    assert not await limiter.acquire(max_wait_s=0.1)
    assert clock.slept == []
    assert await limiter.acquire(max_wait_s=0.5)
    assert clock.slept == [0.5]


async def test_concurrent_callers_stay_under_the_quota_in_real_time() -> None:
    limiter = RateLimiter(rate_per_s=100.0, burst=5, clock=SystemClock())
    loop = asyncio.get_running_loop()
    started = loop.time()
    granted: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        granted.append(loop.time() - started)

    await asyncio.gather(*(call() for _ in range(25)))
    # 5 at once, then 20 more at 100/s: about 0.2 s. Never more than burst + rate * t so far.
    assert max(granted) >= 0.19
    assert max(granted) < 0.5
    for index, at in enumerate(sorted(granted)):
        assert index + 1 <= 5 + 100.0 * at + 1
