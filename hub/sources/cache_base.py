"""What both cache backends share: single flight, stale-while-revalidate and purge feeds."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hub.observability.metrics import Metrics, SourceMetrics
from hub.sources.base import Clock
from hub.sources.cache import Entry, Loader, PurgeFeed, TagsFor, source_of

logger = logging.getLogger("hub.sources.cache")

Values = Mapping[str, Any]


class BaseCache(ABC):
    """`load_many` and the purge feeds on top of a backend's `get_many` and `set_many`."""

    def __init__(self, *, clock: Clock, metrics: Metrics | None) -> None:
        self._clock = clock
        self._metrics: SourceMetrics | None = None if metrics is None else metrics.sources
        self._inflight: dict[str, asyncio.Task[Values]] = {}
        self._refreshes: set[asyncio.Task[Values]] = set()
        self._feeds: set[PurgeFeed] = set()

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]: ...

    @abstractmethod
    async def set_many(
        self,
        entries: Mapping[str, Any],
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags: Mapping[str, Iterable[str]] | None = None,
        read_at: float | None = None,
    ) -> None: ...

    async def load_many(
        self,
        keys: Sequence[str],
        loader: Loader,
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags_for: TagsFor | None = None,
    ) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        entries = await self.get_many(wanted)
        now = self._clock.time()
        found: dict[str, Any] = {}
        missing: list[str] = []
        stale: list[str] = []
        for key in wanted:
            entry = entries.get(key)
            if entry is None or not entry.is_servable(now):
                missing.append(key)
                continue
            found[key] = entry.value
            if not entry.is_fresh(now):
                stale.append(key)
        self._count_lookups(wanted, missing, stale)
        options = (loader, ttl_s, stale_ttl_s, tags_for)
        refresh = [key for key in stale if key not in self._inflight]
        if refresh:
            task = self._start_load(refresh, *options)
            self._refreshes.add(task)
            task.add_done_callback(self._refresh_done)
        if missing:
            found.update(await self._join_loads(missing, options))
        return {key: found[key] for key in wanted if key in found}

    async def _join_loads(
        self, missing: list[str], options: tuple[Loader, float, float, TagsFor | None]
    ) -> dict[str, Any]:
        """Values of the missing keys: ours loaded in one batch, others' awaited."""
        mine = [key for key in missing if key not in self._inflight]
        if mine:
            self._start_load(mine, *options)
        tasks = {key: self._inflight[key] for key in missing}
        found: dict[str, Any] = {}
        for task in set(tasks.values()):
            # Shielded: a caller that gives up must not cancel a load that others await.
            values = await asyncio.shield(task)
            found.update(
                (key, values[key])
                for key, owner in tasks.items()
                if owner is task and key in values
            )
        return found

    def _start_load(
        self,
        keys: list[str],
        loader: Loader,
        ttl_s: float,
        stale_ttl_s: float,
        tags_for: TagsFor | None,
    ) -> asyncio.Task[Values]:
        task = asyncio.create_task(self._load(keys, loader, ttl_s, stale_ttl_s, tags_for))
        for key in keys:
            self._inflight[key] = task
        task.add_done_callback(lambda done: self._load_done(keys, done))
        return task

    async def _load(
        self,
        keys: list[str],
        loader: Loader,
        ttl_s: float,
        stale_ttl_s: float,
        tags_for: TagsFor | None,
    ) -> Values:
        read_at = self._clock.time()
        loaded = await loader(keys)
        values = {key: loaded[key] for key in keys if key in loaded}
        tags = None
        if tags_for is not None:
            tags = {key: tuple(tags_for(key, value)) for key, value in values.items()}
        await self.set_many(
            values, ttl_s=ttl_s, stale_ttl_s=stale_ttl_s, tags=tags, read_at=read_at
        )
        return values

    def _load_done(self, keys: list[str], task: asyncio.Task[Values]) -> None:
        for key in keys:
            if self._inflight.get(key) is task:
                del self._inflight[key]
        if not task.cancelled():
            # Mark the error as seen: the callers that awaited the load already got it.
            task.exception()

    def _refresh_done(self, task: asyncio.Task[Values]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "background refresh failed; serving stale entries", exc_info=task.exception()
            )

    def _count_lookups(self, wanted: list[str], missing: list[str], stale: list[str]) -> None:
        if self._metrics is None:
            return
        missed, staled = set(missing), set(stale)
        counts = Counter(
            (source_of(key), "miss" if key in missed else "stale" if key in staled else "hit")
            for key in wanted
        )
        for (source, result), amount in counts.items():
            self._metrics.record_cache(source, result, amount=amount)

    def status(self) -> str:
        return "ok"

    # -- purge feeds ----------------------------------------------------------------------

    async def subscribe_purges(self) -> PurgeFeed:
        feed = PurgeFeed(self._feeds.discard)
        self._feeds.add(feed)
        return feed

    def _announce(self, tag: str) -> None:
        for feed in list(self._feeds):
            feed.push(tag)

    async def aclose(self) -> None:
        for task in list(self._refreshes):
            task.cancel()
        await asyncio.gather(*self._refreshes, return_exceptions=True)
        for feed in list(self._feeds):
            await feed.aclose()
