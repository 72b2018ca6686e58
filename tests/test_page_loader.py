"""Nested pages: one query per `after` for the largest `first`, smaller pages cut from it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hub.loaders import _page_loader
from hub.sources.store import Page

ROWS = {"a": [f"a{n:02d}" for n in range(30)], "b": ["b00", "b01"]}


async def test_pages_of_one_batch_and_later_ones_share_one_query() -> None:
    asked: list[tuple[tuple[str, ...], int, str | None]] = []

    async def fetch(parents: Sequence[str], first: int, after: str | None) -> dict[str, Page[str]]:
        asked.append((tuple(parents), first, after))
        pages = {}
        for parent in parents:
            rows = [row for row in ROWS[parent] if after is None or row > after]
            pages[parent] = Page(rows[:first], len(rows) > first)
        return pages

    loader = _page_loader(fetch)
    small, large, other = await asyncio.gather(
        loader.load(("a", 5, None)), loader.load(("a", 100, None)), loader.load(("b", 1, None))
    )
    assert asked == [(("a", "b"), 100, None)]
    assert (small.rows, small.has_next) == (ROWS["a"][:5], True)
    assert (large.rows, large.has_next) == (ROWS["a"], False)
    assert (other.rows, other.has_next) == (["b00"], True)
    again = await loader.load(("a", 30, None))  # the whole list is known: no query
    assert (again.rows, again.has_next, len(asked)) == (ROWS["a"], False, 1)
    after = await loader.load(("a", 2, "a10"))
    assert (after.rows, after.has_next) == (["a11", "a12"], True)
    assert asked[1:] == [(("a",), 2, "a10")]


async def test_a_held_page_too_short_for_a_larger_first_is_read_again() -> None:
    asked: list[int] = []

    async def fetch(parents: Sequence[str], first: int, after: str | None) -> dict[str, Page[str]]:
        asked.append(first)
        return {p: Page(ROWS[p][:first], len(ROWS[p]) > first) for p in parents}

    loader = _page_loader(fetch)
    assert (await loader.load(("a", 3, None))).has_next
    bigger = await loader.load(("a", 10, None))
    assert (len(bigger.rows), bigger.has_next, asked) == (10, True, [3, 10])
