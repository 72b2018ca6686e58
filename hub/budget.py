"""Per-client cost budgets: token buckets of cost points, in process or shared on Redis."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


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
# restore rate per second. Refills by the time elapsed on Redis's own clock (TIME), so that
# replicas with skewed clocks agree, then takes all the points or none. The key expires once
# the bucket would be full again, which is the same as absent.
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
if points <= tokens then
  tokens = math.min(size, tokens - points)
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

    async def _run(self, client_id: str, points: int, size: int, rate: float) -> tuple[bool, float]:
        reply = await self._script(keys=[self._prefix + client_id], args=[points, size, repr(rate)])
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

    async def aclose(self) -> None:
        if self._owns:
            await self._redis.aclose()


def create_bucket(cache_url: str, *, namespace: str = "hub") -> Bucket:
    """`memory://`: this process only; `redis://…`/`rediss://…`: shared by the replicas (keys
    under `namespace`, so that deployments sharing a Redis keep their budgets apart)."""
    if cache_url.startswith("memory://"):
        return MemoryBucket()
    if cache_url.startswith(("redis://", "rediss://")):
        return RedisBucket.from_url(cache_url, prefix=f"{namespace}:budget:")
    raise ValueError(f"unknown cache URL {cache_url!r}: use memory:// or redis://host:port/db")
