"""IdentityMemo: values derived from objects that are handed out again unchanged (the
in-process cache's lists, the parser cache's documents), remembered while those objects live
and charged to the cache entry that holds them."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from hub.sizes import estimate_bytes

T = TypeVar("T")
V = TypeVar("V")


class Owner(Protocol):
    """What holds an object and answers for the memory of what is derived from it: a cache
    entry, whose bound then covers the derived values too."""

    def charge(self, nbytes: int) -> None:
        """Count `nbytes` more (fewer, when negative) against the holder."""
        ...


class Held(list[T]):
    """A list an `IdentityMemo` can follow (plain lists take no weak references). A cache
    that keeps one sets `owner`; values derived from it are then charged to that owner."""

    __slots__ = ("__weakref__", "owner")
    owner: Owner


class HeldMap(dict[str, Any]):
    """A dict an `IdentityMemo` can follow, as `Held` is a list."""

    __slots__ = ("__weakref__", "owner")
    owner: Owner


HELD_TYPES = (Held, HeldMap)
"""What a cache that keeps it gives an `owner` to."""


@dataclass(slots=True)
class _Remembered(Generic[V]):
    refs: tuple[weakref.ref[Any], ...]
    value: V
    owner: Owner | None = None
    nbytes: int = 0


class IdentityMemo(Generic[V]):
    """Values by (`extra`, identity of each source object), at most `size` of them.

    Sources are referenced weakly: an entry goes when one of its sources is collected, so the
    memo never keeps a dropped cache entry's data alive (nor makes the collector scan it), and
    a new object that takes a dead one's id never finds its value. A value derived from a
    source that takes no weak reference (a plain list, a list read again from Redis) is made
    each time and not remembered.

    A value is charged (its `estimate_bytes`) to the owner of the first source that has one,
    from when it is remembered or, for a source kept after that, from its next hit; a derived
    `Held` value takes that owner too, so what is derived from it is charged there as well.
    Forgetting a value gives its bytes back.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Remembered[V]] = OrderedDict()
        self._dead: list[Hashable] = []

    def get(self, sources: Sequence[object], make: Callable[[], V], *, extra: Hashable = None) -> V:
        self._forget_dead()
        key = (extra, *map(id, sources))
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            if hit.owner is None:
                _charge(hit, sources)
            return hit.value
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
        remembered = _Remembered(refs, value)
        _charge(remembered, sources)
        replaced = self._entries.pop(key, None)
        if replaced is not None:
            _release(replaced)
        self._entries[key] = remembered
        if len(self._entries) > self.size:
            _release(self._entries.popitem(last=False)[1])

    def __len__(self) -> int:
        self._forget_dead()
        return len(self._entries)

    def _forget_dead(self) -> None:
        while self._dead:
            key = self._dead.pop()
            entry = self._entries.get(key)
            if entry is not None and any(ref() is None for ref in entry.refs):
                del self._entries[key]
                _release(entry)


def _charge(remembered: _Remembered[Any], sources: Sequence[object]) -> None:
    for source in sources:
        owner = getattr(source, "owner", None) if isinstance(source, HELD_TYPES) else None
        if owner is None:
            continue
        remembered.owner = owner
        remembered.nbytes = estimate_bytes(remembered.value)
        if isinstance(remembered.value, HELD_TYPES):
            remembered.value.owner = owner
        owner.charge(remembered.nbytes)
        return


def _release(remembered: _Remembered[Any]) -> None:
    if remembered.owner is not None:
        remembered.owner.charge(-remembered.nbytes)
