"""Connections: `totalCount` of a page that holds every row is its length, without a count."""

from __future__ import annotations

from hub.schema.pagination import connection


async def _counted() -> int:
    return 99


async def test_a_complete_first_page_counts_its_rows_without_asking() -> None:
    made = connection(["a", "b"], has_next=False, after=None, node=str, row_id=str, count=_counted)
    assert await made.total_count() == 2
    assert made.count is not _counted


async def test_other_pages_ask_the_count() -> None:
    for has_next, after in ((True, None), (False, "a"), (True, "a")):
        made = connection(
            ["b"], has_next=has_next, after=after, node=str, row_id=str, count=_counted
        )
        assert await made.total_count() == 99, (has_next, after)
