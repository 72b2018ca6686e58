"""Background jobs of a replica: each runs every `interval_s`, on one replica at a time.

    start() -> every interval_s: take (or renew) the job's lease; if another replica holds
               it, skip the round; else run_once(); a failure is logged and the next round
               comes as usual
    aclose() -> the loop stops; what the job still runs ends (`finish`); the lease is given
               back, so that another replica takes the job at once rather than when it expires

The lease outlasts three rounds: a replica that dies hands the job on soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic, TypeVar

from hub.store.leases import Leases

logger = logging.getLogger("hub.jobs")

T = TypeVar("T")


class PeriodicJob(Generic[T]):
    """A job's loop and lease; subclasses say what one round does (`run_once`)."""

    name = "job"

    def __init__(self, *, interval_s: float, leases: Leases | None = None) -> None:
        self.interval_s = interval_s
        self.leases = leases
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> T:
        raise NotImplementedError

    async def run_leased(self) -> T | None:
        """A round if this replica holds (or takes) the lease; None if another does."""
        if not await self.still_held():
            return None
        return await self.run_once()

    async def still_held(self) -> bool:
        """Renew the lease (or take it); False when another replica holds it. A round that
        may outlast the lease renews it between its items, and stops when it is gone."""
        return self.leases is None or await self.leases.acquire(
            self.name, ttl_s=3 * self.interval_s
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.finish()
        if self.leases is not None:
            with contextlib.suppress(Exception):  # the store may be gone; the lease expires
                await self.leases.release(self.name)

    async def finish(self) -> None:
        """What must end before the job is given up, once its loop has stopped."""

    def report(self, outcome: T) -> None:
        """What a round did, for the log; nothing by default."""

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                outcome = await self.run_leased()
            except Exception:
                logger.exception("%s failed; trying again in %s s", self.name, self.interval_s)
                continue
            if outcome is not None:
                self.report(outcome)
