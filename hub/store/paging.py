"""Whole tables read a page at a time, by key (keyset, not offset: a page costs the same at
the end of a large table as at its start), each page in a session of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Mapped

from hub.sources.store import Store


async def keyset_pages(
    store: Store, query: Select[Any], key: Mapped[Any], page_size: int
) -> AsyncIterator[list[Any]]:
    """The rows of `query` in `key` order, `page_size` at a time. Rows already yielded may be
    changed or deleted meanwhile: the next page starts after the last key seen."""
    after: Any = None
    while True:
        page_query = query.order_by(key).limit(page_size)
        if after is not None:
            page_query = page_query.where(key > after)
        async with store.sessions() as session:
            page = list((await session.scalars(page_query)).all())
            session.expunge_all()
        if not page:
            return
        yield page
        if len(page) < page_size:
            return
        after = getattr(page[-1], key.key)  # type: ignore[attr-defined]
