"""A client-side token bucket: callers wait for their turn rather than exceed a quota."""

from __future__ import annotations

import asyncio

from hub.sources.base import Clock


class RateLimiter:
    """At most `burst` calls at once, `rate_per_s` on average; the excess waits in turn.

    Each caller reserves the next token when it arrives (the bucket may go negative) and
    sleeps until that token would have been refilled, so concurrent callers are served in
    arrival order without a lock and the rate holds however many wait.
    """

    def __init__(self, *, rate_per_s: float, burst: int, clock: Clock) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.monotonic()

    async def acquire(self, *, max_wait_s: float | None = None) -> bool:
        """Take one token, waiting for it; False (nothing taken) if the wait would exceed
        `max_wait_s`."""
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        wait_s = max(0.0, (1.0 - self._tokens) / self.rate_per_s)
        if max_wait_s is not None and wait_s > max_wait_s:
            return False
        self._tokens -= 1.0
        if wait_s > 0:
            try:
                await self._clock.sleep(wait_s)
            except asyncio.CancelledError:
                # The reserved turn goes unused: give it to the next caller.
                self._tokens += 1.0
                raise
        return True
