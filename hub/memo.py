"""IdentityMemo: values derived from objects that are handed out again unchanged (the
in-process cache's lists, the parser cache's documents), remembered while those objects live."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


class Held(list[T]):
    """A list an `IdentityMemo` can follow (plain lists take no weak references)."""

    __slots__ = ("__weakref__",)


class IdentityMemo(Generic[V]):
    """Values by (`extra`, identity of each source object), at most `size` of them.

    Sources are referenced weakly: an entry goes when one of its sources is collected, so the
    memo never keeps a dropped cache entry's data alive (nor makes the collector scan it), and
    a new object that takes a dead one's id never finds its value. A value derived from a
    source that takes no weak reference (a plain list, a list read again from Redis) is made
    each time and not remembered.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[tuple[weakref.ref[Any], ...], V]] = OrderedDict()
        self._dead: list[Hashable] = []

    def get(self, sources: Sequence[object], make: Callable[[], V], *, extra: Hashable = None) -> V:
        self._forget_dead()
        key = (extra, *map(id, sources))
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit[1]
        value = make()
        self.put(sources, value, extra=extra)
        return value

    def put(self, sources: Sequence[object], value: V, *, extra: Hashable = None) -> None:
        self._forget_dead()
        key = (extra, *map(id, sources))

        def dead(_ref: weakref.ref[Any]) -> None:
            # Runs while a source is freed: only note it; the next get or put drops the entry
            # before anything can look its id up again.
            self._dead.append(key)

        try:
            refs = tuple(weakref.ref(source, dead) for source in sources)
        except TypeError:
            return
        self._entries[key] = (refs, value)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        self._forget_dead()
        return len(self._entries)

    def _forget_dead(self) -> None:
        while self._dead:
            key = self._dead.pop()
            entry = self._entries.get(key)
            if entry is not None and any(ref() is None for ref in entry[0]):
                del self._entries[key]
