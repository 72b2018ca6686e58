"""Per-client cost budgets: token buckets of cost points, in process or shared on Redis."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from hub.sources.redis_link import UNREACHABLE, RedisLink, is_redis

logger = logging.getLogger("hub.budget")

MAX_CHARGED_BACK = 100_000
"""Clients whose spending while Redis is away is remembered, to charge it when it is back."""


@dataclass(frozen=True, slots=True)
class BucketResult:
    """`available`: whole points left after the take (or now, when refused).

    `retry_after_s`: 0 when allowed, else the whole seconds until `cost` points are there.
    """

    allowed: bool
    available: int
    retry_after_s: int


class Bucket(Protocol):
    """A bucket of `size` points per client, refilled at `restore_rate_per_s`, full at first.

    `take` removes `cost` points if they are all there, or nothing; `refund` puts points back
    (never above `size`) and returns the whole points there then. Both are atomic per client,
    across every replica sharing the store.
    """

    async def take(
        self, client_id: str, cost: int, *, size: int, restore_rate_per_s: float
    ) -> BucketResult: ...

    async def refund(
        self, client_id: str, points: int, *, size: int, restore_rate_per_s: float
    ) -> int: ...

    async def aclose(self) -> None: ...


def retry_after_s(cost: float, available: float, restore_rate_per_s: float) -> int:
    """Whole seconds, rounded up, until `cost` points are available at the restore rate."""
    missing = cost - available
    return 0 if missing <= 0 else math.ceil(missing / restore_rate_per_s)


def _result(allowed: bool, tokens: float, cost: int, rate: float) -> BucketResult:
    return BucketResult(
        allowed, math.floor(tokens), 0 if allowed else retry_after_s(cost, tokens, rate)
    )


class MemoryBucket:
    """Buckets of this process only; asyncio-safe, as no call awaits between read and write."""

    _SWEEP_EVERY = 1024

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # client -> (points, when, seconds until full): a full bucket is dropped, as absent.
        self._state: dict[str, tuple[float, float, float]] = {}
        self._calls = 0

    def _level(self, client_id: str, size: int, rate: float, now: float) -> float:
        points, when, _ = self._state.get(client_id, (float(size), now, 0.0))
        return min(float(size), points + max(0.0, now - when) * rate)

    def _store(self, client_id: str, points: float, size: int, rate: float, now: float) -> None:
        self._state[client_id] = (points, now, (size - points) / rate)
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            self._state = {
                client: state for client, state in self._state.items() if now - state[1] < state[2]
            }

    async def take(
        self, client_id: str, cost: int, *, size: int, restore_rate_per_s: float
    ) -> BucketResult:
        now = self._clock()
        points = self._level(client_id, size, restore_rate_per_s, now)
        allowed = cost <= points
        if allowed:
            points -= cost
        self._store(client_id, points, size, restore_rate_per_s, now)
        return _result(allowed, points, cost, restore_rate_per_s)

    async def refund(
        self, client_id: str, points: int, *, size: int, restore_rate_per_s: float
    ) -> int:
        now = self._clock()
        level = min(float(size), self._level(client_id, size, restore_rate_per_s, now) + points)
        self._store(client_id, level, size, restore_rate_per_s, now)
        return math.floor(level)

    async def aclose(self) -> None:
        self._state.clear()


# KEYS[1]: the client's bucket. ARGV: points (taken, or given back when negative), size,
# restore rate per second, '1' to take them even if they are not all there (down to 0).
# Refills by the time elapsed on Redis's own clock (TIME), so that replicas with skewed clocks
# agree, then takes all the points or none. The key expires once the bucket would be full
# again, which is the same as absent.
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local points = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = size
  ts = now
end
tokens = math.min(size, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if points <= tokens or ARGV[4] == '1' then
  tokens = math.max(0, math.min(size, tokens - points))
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((size - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens)}
"""


class RedisBucket:
    """Buckets shared by every replica on one Redis; one Lua script call per take or refund."""

    def __init__(self, redis: Redis, *, prefix: str = "hub:budget:", owns: bool = False) -> None:
        self._redis = redis
        self._prefix = prefix
        self._owns = owns
        self._script = redis.register_script(_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "hub:budget:") -> RedisBucket:
        return cls(Redis.from_url(url), prefix=prefix, owns=True)

    async def _run(
        self, client_id: str, points: int, size: int, rate: float, *, force: bool = False
    ) -> tuple[bool, float]:
        reply = await self._script(
            keys=[self._prefix + client_id], args=[points, size, repr(rate), int(force)]
        )
        allowed, tokens = reply
        text = tokens.decode() if isinstance(tokens, bytes) else str(tokens)
        return int(allowed) == 1, float(text)

    async def take(
        self, client_id: str, cost: int, *, size: int, restore_rate_per_s: float
    ) -> BucketResult:
        allowed, tokens = await self._run(client_id, cost, size, restore_rate_per_s)
        return _result(allowed, tokens, cost, restore_rate_per_s)

    async def refund(
        self, client_id: str, points: int, *, size: int, restore_rate_per_s: float
    ) -> int:
        _, tokens = await self._run(client_id, -points, size, restore_rate_per_s)
        return math.floor(tokens)

    async def charge(
        self, client_id: str, points: int, *, size: int, restore_rate_per_s: float
    ) -> None:
        """Take `points`, or as many as there are: what was spent where the bucket could not
        see it."""
        await self._run(client_id, points, size, restore_rate_per_s, force=True)

    async def aclose(self) -> None:
        if self._owns:
            await self._redis.aclose()


class SharedBucket:
    """Buckets on Redis that outlive it: while `link` is down, each process admits from a
    local bucket holding `1/replicas` of every budget (size, at least one point, and restore
    rate), so that `replicas` processes together admit no more than the budget; what one
    spent there is charged to the shared bucket before it uses Redis again. Each outage can
    so exceed a budget by at most the local shares' sizes (one budget size in all), also when
    Redis comes back empty. A query costing more than the share waits for Redis."""

    def __init__(
        self, shared: RedisBucket, link: RedisLink, *, replicas: int, owns_link: bool = False
    ) -> None:
        self.shared = shared
        self.link = link
        self.replicas = replicas
        self.local = MemoryBucket()
        self._owns_link = owns_link
        # client -> (points spent locally, size, restore rate) to charge when Redis is back
        self._spent: dict[str, tuple[int, int, float]] = {}
        link.on_return(self._charge_back)

    def share(self, size: int, restore_rate_per_s: float) -> tuple[int, float]:
        """This process's local bucket size and restore rate while Redis is away."""
        return max(1, size // self.replicas), restore_rate_per_s / self.replicas

    async def take(
        self, client_id: str, cost: int, *, size: int, restore_rate_per_s: float
    ) -> BucketResult:
        if self.link.is_up:
            try:
                return await self.shared.take(
                    client_id, cost, size=size, restore_rate_per_s=restore_rate_per_s
                )
            except UNREACHABLE:
                self.link.failed("budget")
        local_size, local_rate = self.share(size, restore_rate_per_s)
        result = await self.local.take(
            client_id, cost, size=local_size, restore_rate_per_s=local_rate
        )
        if result.allowed:
            self._note(client_id, cost, size, restore_rate_per_s)
        return result

    async def refund(
        self, client_id: str, points: int, *, size: int, restore_rate_per_s: float
    ) -> int:
        if self.link.is_up:
            try:
                return await self.shared.refund(
                    client_id, points, size=size, restore_rate_per_s=restore_rate_per_s
                )
            except UNREACHABLE:
                self.link.failed("budget")
        local_size, local_rate = self.share(size, restore_rate_per_s)
        self._note(client_id, -points, size, restore_rate_per_s)
        return await self.local.refund(
            client_id, points, size=local_size, restore_rate_per_s=local_rate
        )

    async def aclose(self) -> None:
        await self.local.aclose()
        if self._owns_link:
            await self.link.aclose()

    def _note(self, client_id: str, points: int, size: int, rate: float) -> None:
        spent = self._spent.get(client_id)
        if spent is None and points <= 0:
            return
        if spent is None and len(self._spent) >= MAX_CHARGED_BACK:
            logger.warning("too many clients spent while Redis was away; not all are charged")
            return
        self._spent[client_id] = (max(0, (spent[0] if spent else 0) + points), size, rate)

    async def _charge_back(self) -> None:
        while self._spent:
            client_id, (points, size, rate) = self._spent.popitem()
            try:
                await self.shared.charge(client_id, points, size=size, restore_rate_per_s=rate)
            except BaseException:
                self._note(client_id, points, size, rate)
                raise


def create_bucket(
    cache_url: str, *, namespace: str = "hub", link: RedisLink | None = None, replicas: int = 1
) -> Bucket:
    """`memory://`: this process only; `redis://…`/`rediss://…`: shared by the replicas (keys
    under `namespace`, so that deployments sharing a Redis keep their budgets apart) through
    `link` (one of the bucket's own when None), each with a local share of `1/replicas` of
    every budget while Redis is away."""
    if cache_url.startswith("memory://"):
        return MemoryBucket()
    if is_redis(cache_url):
        shared_link = link or RedisLink.from_url(cache_url)
        shared = RedisBucket(shared_link.redis, prefix=f"{namespace}:budget:")
        return SharedBucket(shared, shared_link, replicas=replicas, owns_link=link is None)
    raise ValueError(f"unknown cache URL {cache_url!r}: use memory:// or redis://host:port/db")
