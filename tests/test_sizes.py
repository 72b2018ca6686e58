"""estimate_bytes against what the values really allocate (tracemalloc)."""

from __future__ import annotations

import gc
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from hub.sizes import estimate_bytes


@dataclass(frozen=True, slots=True)
class Counted:
    day: date
    counts: tuple[int, ...]


@dataclass
class Plain:
    day: date
    impressions: int
    rate: float | None
    note: str | None = None


def metric_rows() -> list[tuple[Any, ...]]:
    """A year of one account's daily rows, as the social adapter keeps them."""
    rng = random.Random(1)
    start = date(2025, 11, 1)
    return [
        ((start + timedelta(days=n)).isoformat(), *(rng.randrange(300, 10**6) for _ in range(10)))
        for n in range(365)
    ]


def json_answer() -> Any:
    rng = random.Random(2)
    items = [
        {"account_id": f"acc{n}", "username": f"user{rng.randrange(10**6)}", "followers": n * 977}
        for n in range(300, 800)
    ]
    return json.loads(json.dumps({"data": items}))


def counted() -> list[Counted]:
    rng = random.Random(3)
    return [
        Counted(
            date(2026, 1, 1) + timedelta(days=n), tuple(rng.randrange(300, 10**6) for _ in "abcd")
        )
        for n in range(400)
    ]


def plain() -> list[Plain]:
    return [Plain(date(2026, 1, 1) + timedelta(days=n), 1000 + n, n / 7) for n in range(300)]


def blocks(size: int) -> int:
    return -(-size // 16) * 16


def keyed() -> dict[str, Any]:
    """A set and a dict keyed by numbers, longer than the sample."""
    return {
        "ids": {f"id-{n}" for n in range(500)},
        "names": {n + 10**6: f"name-{n}" for n in range(500)},
    }


class Loose:
    """A plain class: its attributes live in a dict."""

    def __init__(self, n: int) -> None:
        self.day = date(2026, 1, 1) + timedelta(days=n)
        self.count = 10**6 + n
        self.label = f"label-{n}"


def loose() -> list[Loose]:
    return [Loose(n) for n in range(300)]


def allocated(make: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = make()
        return value, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("make", [metric_rows, json_answer, counted, plain, keyed])
def test_the_estimate_is_within_an_eighth_of_what_a_value_allocates(
    make: Callable[[], Any],
) -> None:
    value, real = allocated(make)
    assert 0.875 * real <= estimate_bytes(value) <= 1.125 * real


def test_plain_objects_are_measured_through_their_dict_leaning_high() -> None:
    # Measuring makes the sampled objects' dicts, which take more than their inline values.
    value, real = allocated(loose)
    assert real <= estimate_bytes(value) <= 1.375 * real


def test_shared_singletons_count_nothing_and_atoms_count_their_size() -> None:
    assert estimate_bytes([None, True, 7, -5, 256]) == estimate_bytes([0, 0, 0, 0, 0])
    # In the allocator's 16-byte blocks: 28 bytes take 32, 149 take 160, a pair's 56 take 64.
    assert estimate_bytes(10**6) == 32
    assert estimate_bytes("x" * 100) == 160
    assert estimate_bytes(("x" * 100, 10**6)) == 64 + 160 + 32


def test_a_long_list_costs_no_more_to_measure_than_a_short_one() -> None:
    calls: list[int] = []

    class Counting:
        __slots__ = ("n",)

        def __init__(self, n: int) -> None:
            self.n = n

        def __getattribute__(self, name: str) -> Any:
            if name == "n":
                calls.append(1)
            return object.__getattribute__(self, name)

    items = [Counting(10**6 + n) for n in range(100_000)]
    each = blocks(sys.getsizeof(items[0])) + blocks(sys.getsizeof(10**6))
    assert estimate_bytes(items) == blocks(sys.getsizeof(items)) + 100_000 * each
    # The first and the last item of the sample measure alike: the others are taken to be the
    # same, and the list is not walked.
    assert len(calls) == 2


def test_a_value_wide_at_every_level_is_measured_in_bounded_work() -> None:
    level: Any = ["x" * 40] * 10
    for _ in range(7):
        level = [level] * 10  # 10^8 strings, a few hundred of them in the samples
    started = time.perf_counter()
    assert estimate_bytes(level) > 0
    assert time.perf_counter() - started < 0.5
