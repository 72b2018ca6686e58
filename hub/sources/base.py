"""The vocabulary every source adapter shares: per-source settings, circuit state, the clock."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSettings:
    """How the hub talks to one upstream: where, with what credential, how patiently.

    `timeout_s` bounds each attempt (and the wait for quota or a `Retry-After`).
    `ttl_s` is how long a cached answer is fresh; `stale_ttl_s` how long after that it may
    still be served while one background refresh runs. `retries` counts extra attempts of an
    idempotent read; `retry_budget_ratio` caps retries at that share of recent calls. The
    breaker opens after `breaker_failures` consecutive failures and lets a probe through after
    `breaker_reset_s`. `quota_per_s` (None: unlimited) and `quota_burst` bound the call rate.
    """

    name: str
    base_url: str
    credential: str | None = field(default=None, repr=False)
    timeout_s: float = 2.0
    ttl_s: float = 60.0
    stale_ttl_s: float = 300.0
    retries: int = 2
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0
    retry_budget_ratio: float = 0.2
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    quota_per_s: float | None = None
    quota_burst: int = 10
    max_connections: int = 100

    def __post_init__(self) -> None:
        checks = {
            "name": bool(self.name),
            "timeout_s": self.timeout_s > 0,
            "ttl_s": self.ttl_s >= 0,
            "stale_ttl_s": self.stale_ttl_s >= 0,
            "retries": self.retries >= 0,
            "backoff_base_s": self.backoff_base_s >= 0,
            "backoff_max_s": self.backoff_max_s >= self.backoff_base_s,
            "retry_budget_ratio": 0 <= self.retry_budget_ratio <= 1,
            "breaker_failures": self.breaker_failures >= 1,
            "breaker_reset_s": self.breaker_reset_s >= 0,
            "quota_per_s": self.quota_per_s is None or self.quota_per_s > 0,
            "quota_burst": self.quota_burst >= 1,
            "max_connections": self.max_connections >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"source {self.name!r}: bad {', '.join(bad)}")


@dataclass(frozen=True, slots=True)
class SourceState:
    """What /readyz reports for one source: its circuit and its recent consecutive failures."""

    name: str
    breaker: BreakerState
    recent_failures: int

    def as_json(self) -> dict[str, str | int]:
        return {"breaker": self.breaker, "recentFailures": self.recent_failures}


class Clock(Protocol):
    """Time as the sources see it; tests inject a fake one so that nothing really waits.

    `monotonic()` measures intervals in one process (breaker, rate limiter, latency);
    `time()` is wall-clock epoch seconds, comparable across replicas (cache expiry,
    `Retry-After` dates); `sleep(seconds)` waits on this clock.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
