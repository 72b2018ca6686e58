"""What replicas share about each upstream through Redis: its rate limit and its circuit.

The same token bucket as `RateLimiter` (each caller reserves the next token, the bucket may
go negative, the caller sleeps until its token is refilled), kept in one Redis hash per
source and updated by one script on Redis's own clock: N replicas together send the quota,
not N quotas. While Redis cannot be reached, each replica falls back to its local bucket
(degraded: the quota may be exceeded until Redis is back) rather than failing calls.

A circuit that one replica's calls open is written to Redis (a key that expires when the
circuit would half-open); every replica reads the circuits once a `poll_s` and opens its
own, so that the others stop calling a dead upstream too, and closes it again once the key
is gone (the upstream is back, or the time to probe it has come).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from hub.sources.breaker import CircuitBreaker
from hub.sources.ratelimit import RateLimiter
from hub.sources.redis_link import UNREACHABLE, RedisLink

logger = logging.getLogger("hub.sources")

POLL_S = 1.0
"""How often a replica reads the circuits the others opened."""

# KEYS[1]: the bucket. ARGV: rate per second, burst, most seconds to wait (negative: any).
# Returns the seconds to wait for the token taken, or -1 when the wait would be longer
# than allowed (nothing taken). The key expires once the bucket would be full again.
RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = math.max(0, (1 - tokens) / rate)
if max_wait >= 0 and wait > max_wait then
  return '-1'
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True, slots=True)
class SharedState:
    """Where a replica's source clients share their state: the Redis link, and the key
    namespace (`HUB_CACHE_NAMESPACE`) that replicas of one hub have in common."""

    link: RedisLink
    namespace: str


class SharedRateLimiter:
    """`RateLimiter`'s contract, its bucket in Redis (`key`); `local` serves while Redis
    is unreachable."""

    def __init__(self, link: RedisLink, key: str, local: RateLimiter) -> None:
        self.link = link
        self.key = key
        self.local = local
        self.rate_per_s = local.rate_per_s
        self.burst = local.burst
        self._reserve = link.redis.register_script(RESERVE)

    async def acquire(self, *, max_wait_s: float | None = None) -> bool:
        """Take one token of the shared bucket, waiting for it; False (nothing taken) if the
        wait would exceed `max_wait_s`."""
        if not self.link.is_up:
            return await self.local.acquire(max_wait_s=max_wait_s)
        limit = -1.0 if max_wait_s is None else max_wait_s
        try:
            answer = await self._reserve(keys=[self.key], args=[self.rate_per_s, self.burst, limit])
        except UNREACHABLE:
            self.link.failed("the shared rate limit")
            return await self.local.acquire(max_wait_s=max_wait_s)
        wait_s = float(answer)
        if wait_s < 0:
            return False
        if wait_s > 0:
            try:
                await asyncio.sleep(wait_s)
            except asyncio.CancelledError:
                # The reserved turn goes unused: give it back for the next caller.
                with contextlib.suppress(*UNREACHABLE):
                    await self.link.redis.hincrbyfloat(self.key, "tokens", 1.0)
                raise
        return True


class SharedCircuits:
    """The circuits of one replica's sources, told to and from the other replicas."""

    def __init__(
        self,
        shared: SharedState,
        breakers: Iterable[tuple[CircuitBreaker, float]],
        *,
        poll_s: float = POLL_S,
    ) -> None:
        """`breakers`: each with its `reset_s`, how long an opened circuit stays open."""
        self.link = shared.link
        self.namespace = shared.namespace
        self.poll_s = poll_s
        self._breakers = {breaker.source: (breaker, reset_s) for breaker, reset_s in breakers}
        self._desired: dict[str, bool] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        for breaker, _reset_s in self._breakers.values():
            breaker.on_change = self._changed

    def key(self, source: str) -> str:
        return f"{self.namespace}:circuit:{source}"

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="shared-circuits")

    async def flush(self) -> None:
        """Once the changes told so far are written (or Redis was found unreachable)."""
        while self._writers:
            await asyncio.gather(*self._writers.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop reading; what this replica's circuits said last is written first."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await self.flush()
        for breaker, _reset_s in self._breakers.values():
            breaker.on_change = None

    async def read(self) -> None:
        """Apply the circuits the replicas have open now."""
        sources = list(self._breakers)
        opened = await self.link.redis.mget([self.key(source) for source in sources])
        for source, value in zip(sources, opened, strict=True):
            breaker = self._breakers[source][0]
            if value is not None:
                breaker.trip()
            else:
                breaker.untrip()

    def _changed(self, source: str, opened: bool) -> None:
        """Tell the others, in order: one writer per source, writing its latest state."""
        self._desired[source] = opened
        if source not in self._writers:
            self._writers[source] = asyncio.get_running_loop().create_task(self._write(source))

    async def _write(self, source: str) -> None:
        key = self.key(source)
        try:
            while source in self._desired:
                opened = self._desired.pop(source)
                if not self.link.is_up:
                    continue
                try:
                    if opened:
                        reset_ms = max(1, int(self._breakers[source][1] * 1000))
                        await self.link.redis.set(key, "open", px=reset_ms)
                    else:
                        await self.link.redis.delete(key)
                except UNREACHABLE:
                    self.link.failed("the shared circuits")
        finally:
            # Leaves the writers with no await between its last look at `_desired` and here:
            # a change told meanwhile starts a writer of its own.
            del self._writers[source]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self.link.is_up:
                continue
            try:
                await self.read()
            except UNREACHABLE:
                self.link.failed("the shared circuits")
