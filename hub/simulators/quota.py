"""TokenBucket: the per-API-key request quota of a simulator (pure: the caller gives `now`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate_per_s` tokens per second, holding at most one second's worth (at least one)."""

    rate_per_s: float
    tokens: float = field(init=False)
    updated_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_per_s)

    def take(self, now_s: float) -> int | None:
        """Spend one token; None when allowed, else the whole seconds to wait (Retry-After)."""
        if self.updated_s is not None:
            elapsed = max(0.0, now_s - self.updated_s)
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.tokens) / self.rate_per_s))
