"""The in-process cache: a bounded LRU with deadlines and a tag index (`memory://`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.sources.base import Clock
from hub.sources.cache import Entry
from hub.sources.cache_base import BaseCache
from hub.sources.metrics import Metrics

PURGE_MEMORY_S = 300.0
"""How long a purge is remembered to refuse the results of loads that started before it."""


@dataclass(slots=True)
class _Slot:
    entry: Entry
    keep_until: float


class LocalEntries:
    """Entries held in this process: least recently used evicted first, dropped past
    `keep_until`, indexed by tag, with recent purges remembered per tag."""

    def __init__(self, *, max_entries: int, clock: Clock) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._keys_by_tag: dict[str, set[str]] = {}
        self._purged_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        now = self._clock.time()
        found: dict[str, Entry] = {}
        for key in keys:
            slot = self._slots.get(key)
            if slot is None:
                continue
            if now >= slot.keep_until:
                self._drop(key)
                continue
            self._slots.move_to_end(key)
            found[key] = slot.entry
        return found

    def put(self, key: str, entry: Entry, *, keep_until: float, read_at: float | None) -> bool:
        """Hold `entry` until `keep_until`; refused (False) if a tag of it was purged at or
        after `read_at`."""
        if read_at is not None and self.was_purged_since(entry.tags, read_at):
            return False
        self._drop(key)
        self._slots[key] = _Slot(entry, keep_until)
        for tag in entry.tags:
            self._keys_by_tag.setdefault(tag, set()).add(key)
        while len(self._slots) > self.max_entries:
            self._drop(next(iter(self._slots)))
        return True

    def drop_tag(self, tag: str) -> int:
        """Drop the entries tagged `tag` and remember the purge; the number dropped."""
        now = self._clock.time()
        self._purged_at.pop(tag, None)
        self._purged_at[tag] = now
        while True:  # ends at `tag`, just remembered
            oldest = next(iter(self._purged_at))
            if self._purged_at[oldest] > now - PURGE_MEMORY_S:
                break
            del self._purged_at[oldest]
        keys = self._keys_by_tag.pop(tag, set())
        for key in keys:
            self._drop(key)
        return len(keys)

    def was_purged_since(self, tags: Iterable[str], read_at: float) -> bool:
        return any(self._purged_at.get(tag, float("-inf")) >= read_at for tag in tags)

    def clear(self) -> None:
        self._slots.clear()
        self._keys_by_tag.clear()

    def _drop(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        for tag in slot.entry.tags:
            keys = self._keys_by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_tag[tag]


class MemoryCache(BaseCache):
    """The `Cache` of one process: purges and their feeds reach this process only."""

    def __init__(
        self, *, max_entries: int = 10_000, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self.entries = LocalEntries(max_entries=max_entries, clock=clock)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return self.entries.get_many(keys)

    async def set_many(
        self,
        entries: Mapping[str, Any],
        *,
        ttl_s: float,
        stale_ttl_s: float,
        tags: Mapping[str, Iterable[str]] | None = None,
        read_at: float | None = None,
    ) -> None:
        now = self._clock.time()
        for key, value in entries.items():
            entry = Entry(
                value,
                now + ttl_s,
                now + ttl_s + stale_ttl_s,
                tuple(tags.get(key, ()) if tags else ()),
            )
            self.entries.put(key, entry, keep_until=entry.stale_until, read_at=read_at)

    async def purge_tag(self, tag: str) -> int:
        dropped = self.entries.drop_tag(tag)
        self._announce(tag)
        return dropped

    async def publish_purge(self, tag: str) -> None:
        self.entries.drop_tag(tag)
        self._announce(tag)
