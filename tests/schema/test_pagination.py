"""Connections: `totalCount` of a page that holds every row is its length, without a count."""

from __future__ import annotations

import pytest

from hub.errors import BadUserInput
from hub.schema.pagination import (
    connection,
    decode_number_cursor,
    encode_number_cursor,
    opaque,
)


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


@pytest.mark.parametrize(
    "text",
    ["v1:n:\u00b2", "v1:n:\u0661", "v1:n:" + "9" * 5000, "v1:n:2147483648", "v1:n:-1", "v1:n:"],
)
def test_a_number_cursor_that_holds_no_row_number_is_bad_user_input(text: str) -> None:
    with pytest.raises(BadUserInput) as raised:
        decode_number_cursor(opaque(text))
    assert raised.value.extensions == {"code": "BAD_USER_INPUT", "argument": "after"}


def test_a_number_cursor_holds_its_row_number() -> None:
    assert decode_number_cursor(encode_number_cursor(2**31 - 1)) == 2**31 - 1
    assert decode_number_cursor(encode_number_cursor(0)) == 0
