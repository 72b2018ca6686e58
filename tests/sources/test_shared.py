"""What replicas share about an upstream through Redis: one quota, and its circuit."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from hub.errors import SourceUnavailable
from hub.sources.breaker import CircuitBreaker
from hub.sources.ratelimit import RateLimiter
from hub.sources.redis_link import MAX_CONNECTIONS, RedisLink, connect_redis
from hub.sources.shared import SharedCircuits, SharedRateLimiter, SharedState
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


def _fail(breaker: CircuitBreaker, times: int, *, probe: bool = False) -> None:
    for _ in range(times):
        breaker.record_failure(probe=probe)


async def test_a_circuit_one_replica_opens_opens_on_the_others_and_closes_with_it(
    links: list[RedisLink],
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    shared = [SharedState(link, namespace) for link in links[:2]]
    clock = FakeClock()
    a, b = (CircuitBreaker("social", failures=3, reset_s=5.0, clock=clock) for _ in range(2))
    replica_a = SharedCircuits(shared[0], [(a, 5.0)])
    replica_b = SharedCircuits(shared[1], [(b, 5.0)])
    try:
        _fail(a, 3)
        await replica_a.flush()
        ttl_ms = await links[1].redis.pttl(replica_a.key("social"))
        assert 0 < ttl_ms <= 5000  # gone when the circuit would half-open
        await replica_b.read()
        assert b.state == "open"
        with pytest.raises(SourceUnavailable):
            b.check()
        clock.advance(5)
        assert a.check() is True  # a's probe
        a.record_success()
        await replica_a.flush()
        await replica_b.read()
        assert b.snapshot().breaker == "closed"
    finally:
        await replica_a.aclose()
        await replica_b.aclose()
        await links[0].redis.delete(replica_a.key("social"))


async def test_a_replica_whose_own_calls_opened_its_circuit_keeps_it_open_to_its_probe(
    links: list[RedisLink],
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    clock = FakeClock()
    breaker = CircuitBreaker("crm", failures=2, reset_s=5.0, clock=clock)
    circuits = SharedCircuits(SharedState(links[0], namespace), [(breaker, 5.0)])
    try:
        links[0].failed("a test")  # the key is never written
        _fail(breaker, 2)
        await circuits.flush()
        await links[0].wait_up()
        await circuits.read()  # no key in Redis: not the others' verdict to undo
        assert breaker.state == "open"
    finally:
        await circuits.aclose()


async def test_more_commands_at_once_than_the_pool_holds_wait_their_turn(
    links: list[RedisLink],
) -> None:
    key = f"test-{uuid.uuid4().hex[:12]}:burst"
    redis = links[0].redis
    # Each holds its connection for a moment: more of them than the pool has connections.
    script = "redis.call('INCR', KEYS[1]) return 1"
    burst = 3 * MAX_CONNECTIONS
    results = await asyncio.gather(*(redis.eval(script, 1, key) for _ in range(burst)))
    assert sum(results) == burst
    assert int(await redis.get(key) or 0) == burst
    await redis.delete(key)
