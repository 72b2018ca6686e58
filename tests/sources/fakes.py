"""A fake clock for source tests: sleeping advances it at once, so nothing really waits."""

from __future__ import annotations

import asyncio

EPOCH_S = 1_700_000_000.0


class FakeClock:
    """Both monotonic and wall time; `sleep` records the wait and moves time forward."""

    def __init__(self, start_s: float = EPOCH_S) -> None:
        self.now_s = start_s
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now_s

    def time(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
