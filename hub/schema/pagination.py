"""Relay cursor connections: `edges { cursor node }`, `pageInfo`, lazy `totalCount`."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import strawberry

from hub.errors import BadUserInput
from hub.ids import is_id

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")

_CURSOR_PREFIX = "v1:"
_ROW_NUMBER = re.compile(r"[0-9]{1,10}")
_MAX_ROW_NUMBER = 2**31 - 1  # the store's integer ids are 32-bit


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="Rows matching the arguments, across all pages.")
    async def total_count(self) -> int:
        return await self.count()


def opaque(text: str) -> str:
    """`text` as an opaque cursor: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unwrap(cursor: str) -> str:
    """The text inside an opaque cursor; empty when it is not base64 of UTF-8."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def encode_cursor(row_id: str) -> str:
    return opaque(_CURSOR_PREFIX + row_id)


def decode_cursor(cursor: str | None, *, kind: str) -> str | None:
    """The row id inside `cursor`, or BAD_USER_INPUT when it is not one of ours."""
    if cursor is None:
        return None
    text = unwrap(cursor)
    row_id = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not is_id(kind, row_id):
        raise BadUserInput("`after` is not a valid cursor.", argument="after")
    return row_id


def check_first(first: int, *, cap: int) -> int:
    """`first` if it lies in 0..cap, else BAD_USER_INPUT naming the cap."""
    if first < 0 or first > cap:
        raise BadUserInput(
            f"`first` must be between 0 and {cap}.", argument="first", limit=cap, actual=first
        )
    return first


def connection(
    rows: Sequence[RowT],
    *,
    has_next: bool,
    after: str | None,
    node: Callable[[RowT], NodeT],
    row_id: Callable[[RowT], str],
    count: Callable[[], Awaitable[int]],
    cursor: Callable[[RowT], str] | None = None,
) -> Connection[NodeT]:
    """A page of rows as a connection; cursors carry the row id unless `cursor` says else.
    A first page with nothing after it holds every matching row: its `totalCount` is its
    length, and `count` is not asked."""
    make_cursor = cursor or (lambda row: encode_cursor(row_id(row)))
    edges = [Edge(cursor=make_cursor(row), node=node(row)) for row in rows]
    if after is None and not has_next:
        count = known_count(len(rows))
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=count,
    )


def known_count(total: int) -> Callable[[], Awaitable[int]]:
    """A connection's `count` when the total is already known."""

    async def count() -> int:
        return total

    return count


@dataclass(frozen=True, slots=True)
class PageArgs:
    """Checked `first` and the row id decoded from `after`."""

    first: int
    after: str | None

    @classmethod
    def parse(
        cls, first: int | None, after: str | None, *, kind: str, cap: int, default: int = 20
    ) -> PageArgs:
        """`first: null` means the field's default page size."""
        size = default if first is None else first
        return cls(check_first(size, cap=cap), decode_cursor(after, kind=kind))


def encode_number_cursor(number: int) -> str:
    return encode_cursor(f"n:{number}")


def decode_number_cursor(cursor: str | None) -> int | None:
    """The row number inside a cursor made by `encode_number_cursor`, or BAD_USER_INPUT."""
    if cursor is None:
        return None
    text = unwrap(cursor)
    number = text.removeprefix(_CURSOR_PREFIX + "n:")
    # ASCII digits only (`str.isdigit` takes "²", which `int` refuses), and no more than a
    # row number can hold (`int` refuses 4,300 digits; the store's column, 2**31).
    if (
        not text.startswith(_CURSOR_PREFIX + "n:")
        or not _ROW_NUMBER.fullmatch(number)
        or int(number) > _MAX_ROW_NUMBER
    ):
        raise BadUserInput("`after` is not a valid cursor.", argument="after")
    return int(number)
