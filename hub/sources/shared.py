"""What replicas share about each upstream through Redis: its rate limit.

The same token bucket as `RateLimiter` (each caller reserves the next token, the bucket may
go negative, the caller sleeps until its token is refilled), kept in one Redis hash per
source and updated by one script on Redis's own clock: N replicas together send the quota,
not N quotas. While Redis cannot be reached, each replica falls back to its local bucket
(degraded: the quota may be exceeded until Redis is back) rather than failing calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from hub.sources.ratelimit import RateLimiter
from hub.sources.redis_link import UNREACHABLE, RedisLink

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
