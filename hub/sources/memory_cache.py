"""The in-process cache: an LRU bounded in bytes, with deadlines and a tag index (`memory://`)."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.memo import HELD_TYPES
from hub.observability.metrics import Metrics
from hub.sizes import estimate_bytes
from hub.sources.base import Clock
from hub.sources.cache import DEFAULT_MAX_BYTES, Entry
from hub.sources.cache_base import BaseCache

PURGE_MEMORY_S = 300.0
"""How long a purge is remembered to refuse the results of loads that started before it."""

ENTRY_OVERHEAD_BYTES = 400
"""What holding one entry costs besides its key, tags and value: its slot, LRU link and
deadline."""

TAG_OVERHEAD_BYTES = 250
"""What each of an entry's tags costs in the tag index."""

LARGEST_SHARE = 16
"""An entry (with the values derived from it) larger than this share of the bound is not
kept: one answer must not push a whole cache out."""


class _Account:
    """The bytes one held entry accounts for: its own, and those of the values memos derive
    from it (`hub.memo.Owner`). Detached (`home` None) once the entry is dropped, so that
    charges to it change nothing."""

    __slots__ = ("home", "key", "nbytes")

    def __init__(self, home: LocalEntries, key: str, nbytes: int) -> None:
        self.home: LocalEntries | None = home
        self.key = key
        self.nbytes = nbytes

    def charge(self, nbytes: int) -> None:
        if self.home is not None:
            self.home.charge(self, nbytes)


@dataclass(slots=True)
class _Slot:
    entry: Entry
    keep_until: float
    account: _Account


class LocalEntries:
    """Entries held in this process, at most `max_bytes` of them (least recently used evicted
    first), dropped past `keep_until` whether read or not, indexed by tag, with recent purges
    remembered per tag.

    An entry's size is estimated once, when it is put (`estimate_bytes`), and grows by what
    memos derive from its value and charge to it; `nbytes` is the sum.
    """

    def __init__(self, *, max_bytes: int, clock: Clock) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // LARGEST_SHARE
        self.nbytes = 0
        self._clock = clock
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._keys_by_tag: dict[str, set[str]] = {}
        self._purged_at: dict[str, float] = {}
        self._deadlines: list[tuple[float, str]] = []
        """A heap of (keep_until, key), some of them of entries since dropped or replaced."""

    def __len__(self) -> int:
        return len(self._slots)

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        now = self._clock.time()
        self._sweep(now)
        found: dict[str, Entry] = {}
        for key in keys:
            slot = self._slots.get(key)
            if slot is None:
                continue
            self._slots.move_to_end(key)
            found[key] = slot.entry
        return found

    def put(self, key: str, entry: Entry, *, keep_until: float, read_at: float | None) -> bool:
        """Hold `entry` until `keep_until`; refused (False) if a tag of it was purged at or
        after `read_at`, if it is larger than `max_entry_bytes`, or if `keep_until` is past."""
        if read_at is not None and self.was_purged_since(entry.tags, read_at):
            return False
        now = self._clock.time()
        self._drop(key)
        self._sweep(now)
        nbytes = (
            ENTRY_OVERHEAD_BYTES
            + TAG_OVERHEAD_BYTES * len(entry.tags)
            + estimate_bytes((key, entry.tags, entry.value))
        )
        if nbytes > self.max_entry_bytes or keep_until <= now:
            return False
        account = _Account(self, key, nbytes)
        self._slots[key] = _Slot(entry, keep_until, account)
        self.nbytes += nbytes
        heapq.heappush(self._deadlines, (keep_until, key))
        for tag in entry.tags:
            self._keys_by_tag.setdefault(tag, set()).add(key)
        if isinstance(entry.value, HELD_TYPES):
            entry.value.owner = account  # what memos derive from it is charged here
        self._shrink()
        return True

    def charge(self, account: _Account, nbytes: int) -> None:
        """Add `nbytes` (negative: give back) to a held entry's size; an entry that grows past
        `max_entry_bytes` is dropped, and the least recently used go until under the bound."""
        account.nbytes += nbytes
        self.nbytes += nbytes
        if account.nbytes > self.max_entry_bytes:
            self._drop(account.key)
        self._shrink()

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
        for slot in self._slots.values():
            slot.account.home = None
        self._slots.clear()
        self._keys_by_tag.clear()
        self._deadlines.clear()
        self.nbytes = 0

    def _sweep(self, now: float) -> None:
        """Drop every entry past its `keep_until`: one heap comparison when none is."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, key = heapq.heappop(deadlines)
            slot = self._slots.get(key)
            if slot is not None and slot.keep_until <= now:
                self._drop(key)
        if len(deadlines) > 2 * len(self._slots) + 64:
            # Items of replaced or evicted entries wait for their deadline; rebuilt before
            # they outnumber the live ones, which keeps the heap O(entries).
            self._deadlines = [(slot.keep_until, key) for key, slot in self._slots.items()]
            heapq.heapify(self._deadlines)

    def _shrink(self) -> None:
        while self.nbytes > self.max_bytes and self._slots:
            self._drop(next(iter(self._slots)))

    def _drop(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is None:
            return
        slot.account.home = None
        self.nbytes -= slot.account.nbytes
        for tag in slot.entry.tags:
            keys = self._keys_by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_tag[tag]


class MemoryCache(BaseCache):
    """The `Cache` of one process: purges and their feeds reach this process only."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(clock=clock, metrics=metrics)
        self.entries = LocalEntries(max_bytes=max_bytes, clock=clock)

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
