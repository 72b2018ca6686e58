"""IdentityMemo: values derived from objects that are handed out again unchanged (the
in-process cache's lists, the parser cache's documents), remembered by those objects."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """The last `size` values by (`extra`, identity of each source object).

    An entry keeps its sources alive, so no other object can take their ids while it is
    remembered: a hit always means the very same objects. Equal but distinct objects (a list
    read again from Redis) miss, and are derived again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[Sequence[object], V]] = OrderedDict()

    def get(self, sources: Sequence[object], make: Callable[[], V], *, extra: Hashable = None) -> V:
        key = (extra, *map(id, sources))
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit[1]
        value = make()
        self.put(sources, value, extra=extra)
        return value

    def put(self, sources: Sequence[object], value: V, *, extra: Hashable = None) -> None:
        self._entries[(extra, *map(id, sources))] = (tuple(sources), value)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
