"""`estimate_bytes`: what a kept value holds in memory, estimated once when it is kept."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from itertools import islice
from sys import getsizeof
from typing import Any

SAMPLE = 4
"""Items measured of a longer list, tuple, set or dict; the rest are assumed alike."""

MAX_DEPTH = 8
"""Containers nested deeper than this count their own header only."""

MAX_VISITS = 4096
"""Containers looked into per estimate, whatever the value's shape: wide lists nested deep
would otherwise multiply the sample at every level."""

ALIGNMENT = 16
POINTER_BYTES = 8
VALUES_HEADER_BYTES = 32

_ATOMS = (str, bytes, float, complex, Decimal, date, datetime, time, timedelta)
_ATOM_TYPES = frozenset(_ATOMS)
"""The atoms' own types, looked up before any `isinstance` (subclasses take that path)."""
_SMALL_INTS = range(-5, 257)  # CPython shares these: keeping one costs nothing


def estimate_bytes(value: object) -> int:
    """About the bytes `value` and what it references hold (`sys.getsizeof` in the
    allocator's blocks, object headers included), for deciding what a cache may keep: within
    about a tenth of what such values allocate.

    Containers of more than `SAMPLE` items are measured on `SAMPLE` of them spread evenly and
    scaled to their length (on two, the first and the last, when those two measure alike):
    source answers are uniform lists, so the estimate costs the same for ten items or a year
    of daily points. At most `MAX_VISITS` containers are looked into;
    past that (or past `MAX_DEPTH`), a container counts its own header only. Shared singletons
    (None, booleans, small ints, enum members, classes) count nothing; an object referenced
    twice is counted twice, so the estimate leans high on values that share parts.
    """
    return _Estimate().size(value, MAX_DEPTH)


class _Estimate:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_VISITS

    def size(self, value: object, depth: int) -> int:
        kind: type = type(value)
        if kind in _ATOM_TYPES:
            return _allocated(value)
        if value is None or kind is bool:
            return 0
        if kind is int:
            return 0 if value in _SMALL_INTS else _allocated(value)
        if isinstance(value, _ATOMS):
            return _allocated(value)
        if isinstance(value, Enum | type):
            return 0
        own = _allocated(value)
        self.left -= 1
        if depth == 0 or self.left < 0:
            return own
        if isinstance(value, list | tuple | set | frozenset):
            return own + self.sampled(value, depth - 1)
        if isinstance(value, dict):
            return own + self.sampled_items(value, depth - 1)
        layout = _layout(kind)
        if layout is None:  # a plain object: its attributes live in a dict of their own
            fields = getattr(value, "__dict__", None)
            if not isinstance(fields, dict):
                return own
            return own + _allocated(fields) + self.sampled_items(fields, depth - 1)
        names, inline = layout
        # An unset slot reads as None, which counts nothing.
        return own + inline + self.each([getattr(value, n, None) for n in names], depth - 1)

    def each(self, items: Any, depth: int) -> int:
        """The sum of `size` over `items`, the atoms (most items of source answers) measured
        here without a call each."""
        total = 0
        for item in items:
            kind = type(item)
            if kind in _ATOM_TYPES:
                total += (getsizeof(item) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            elif kind is int:
                if item not in _SMALL_INTS:
                    total += (getsizeof(item) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
            elif item is not None and kind is not bool:
                total += self.size(item, depth)
        return total

    def sampled(self, items: Any, depth: int) -> int:
        length = len(items)
        if length <= SAMPLE:
            return self.each(items, depth)
        picks = _picks(items, length)
        # The first and the last of the sample alike (records of one shape, the rule of a
        # source's answers): each of the others is taken to be the same.
        first, last = self.size(picks[0], depth), self.size(picks[-1], depth)
        if first == last:
            return first * length
        return (first + last + self.each(picks[1:-1], depth)) * length // SAMPLE

    def sampled_items(self, mapping: dict[Any, Any], depth: int) -> int:
        """Keys that are strings count nothing: attribute names are interned, and the keys of
        the objects of one JSON answer are made once and shared."""
        length = len(mapping)
        pairs = mapping.items() if length <= SAMPLE else _picks(mapping.items(), length)
        measured = self.each([key for key, _ in pairs if type(key) is not str], depth)
        measured += self.each([item for _, item in pairs], depth)
        return measured if length <= SAMPLE else measured * length // SAMPLE


def _allocated(value: object) -> int:
    """`sys.getsizeof`, rounded up to the allocator's 16-byte blocks."""
    return (getsizeof(value) + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _picks(items: Any, length: int) -> list[Any]:
    """`SAMPLE` items spread evenly over a sequence; the first `SAMPLE` of anything else."""
    if isinstance(items, list | tuple):
        return [items[index * length // SAMPLE] for index in range(SAMPLE)]
    return list(islice(items, SAMPLE))


@lru_cache(maxsize=256)
def _layout(kind: type) -> tuple[tuple[str, ...], int] | None:
    """A dataclass's or a slotted class's field names, and what its instances hold for them
    besides the values: a dataclass without slots keeps its attributes in an array beside the
    object (its dict is made only when asked for, which measuring must not do); slots live in
    the object itself. None for other objects."""
    names = _field_names(kind)
    if names is None:
        return None
    has_dict = any("__dict__" in klass.__dict__ for klass in kind.__mro__ if klass is not object)
    return names, POINTER_BYTES * len(names) + VALUES_HEADER_BYTES if has_dict else 0


def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's fields, or the slots of a class without a dict; None for other objects."""
    fields = getattr(kind, "__dataclass_fields__", None)
    if isinstance(fields, dict):
        return tuple(fields)
    names: list[str] = []
    for klass in kind.__mro__:
        if "__dict__" in klass.__dict__ and klass is not object:
            return None
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [n for n in slots if n != "__weakref__"]
    return tuple(names)
