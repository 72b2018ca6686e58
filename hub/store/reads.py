"""The store's reads, run on the driver's own connection.

A read of the store is a SQLAlchemy `SELECT`, built as any other; running it through
SQLAlchemy's execution (an execution context, a cursor result, and on SQLite three trips to
the connection's thread for the cursor, the statement and its rows) took three times as long
as the statement itself. `CompiledReads` runs it in one call of the driver instead:

    SELECT ──cache key──▶ compiled once per shape ──lengths of its lists──▶ SQL text
      (values taken from the statement)  │ placeholders in order, `IN` lists spread out
                                         ▼
    checked-out connection (bound to its tenant, `hub.store.tenancy`) ── driver call ──▶
    rows as named tuples, each value through its column type's own result conversion

The same compiled statement, the same conversions of values in and out and the same span
per statement (`hub.observability.tracing.statement_span`) as SQLAlchemy's path; what it
cannot run this way (an empty `IN` list, a dialect other than SQLite's and PostgreSQL's,
escaped or literal parameters) goes through SQLAlchemy's execution as before.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import Select
from sqlalchemy.engine import Compiled
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from hub.observability.tracing import statement_span

AnySelect: TypeAlias = Select[*tuple[Any, ...]]
"""A `SELECT` of any columns."""
MAX_SHAPES = 256
"""Compiled statements kept (one per shape of statement: the reads' conditions vary little)."""
MAX_TEXTS = 1024
"""SQL texts kept, of all shapes (one per shape and lengths of its `IN` lists)."""
_PLACEHOLDERS = {
    "sqlite": re.compile(r"\?|__\[POSTCOMPILE_(?P<spread>\w+)\]"),
    "asyncpg": re.compile(r"\$(?P<number>\d+)|__\[POSTCOMPILE_(?P<spread>\w+)\]"),
}
"""SQLite's `?` and PostgreSQL's `$n` (numbered among the one-value parameters), and
SQLAlchemy's marks for the lists an `IN` spreads out."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """One statement compiled for the engine's dialect, with what its runs need."""

    compiled: Compiled
    expanding: tuple[str, ...]
    single: tuple[str, ...]
    """The names of the one-value placeholders, in the order of their `?` or `$n`."""
    bind: Mapping[str, Callable[[Any], Any]]
    result: tuple[Callable[[Any], Any] | None, ...]
    row: Any


class CompiledReads:
    """Run `SELECT`s on `engine` (SQLite or PostgreSQL) through the driver's own calls."""

    def __init__(self, engine: AsyncEngine, *, bound_at_checkout: bool) -> None:
        """`bound_at_checkout`: on PostgreSQL, whether `engine`'s connections are bound to
        their context's tenant when taken from the pool (`create_engine(reads=True)`); a
        transactional engine binds at the start of a transaction, which a driver's call of
        its own never starts, so its reads go through SQLAlchemy's execution."""
        self.engine = engine
        self.dialect = engine.dialect
        self.driver = {"sqlite": "sqlite", "postgresql": "asyncpg"}.get(self.dialect.name)
        if self.dialect.driver not in ("aiosqlite", "asyncpg"):
            self.driver = None
        if self.driver == "asyncpg" and not bound_at_checkout:
            self.driver = None
        self._shapes: dict[Any, _Shape | None] = {}
        self._texts: dict[tuple[int, tuple[int, ...]], tuple[str, tuple[tuple[str, bool], ...]]]
        self._texts = {}

    async def rows(self, statement: AnySelect, parameters: Mapping[str, Any] | None) -> list[Any]:
        """The rows of `statement`, each a named tuple of its columns."""
        key = statement._generate_cache_key() if self.driver else None
        shape = None if key is None else self._shape(statement, key)
        if key is None or shape is None:
            return await self._through_sqlalchemy(statement, parameters)
        values: Mapping[str, Any] = (
            shape.compiled.construct_params(
                params=dict(parameters) if parameters else None,
                extracted_parameters=key.bindparams,
                escape_names=False,
            )
            or {}
        )
        lengths = tuple(len(values[name]) for name in shape.expanding)
        if 0 in lengths:
            return await self._through_sqlalchemy(statement, parameters)
        text, order = self._text(shape, values, lengths)
        arguments: list[Any] = []
        bind = shape.bind
        for name, spread in order:
            value, convert = values[name], bind.get(name)
            if spread:
                arguments.extend(value if convert is None else [convert(v) for v in value])
            else:
                arguments.append(value if convert is None else convert(value))
        if self.driver == "sqlite":
            records = await self._sqlite(text, arguments)
        else:
            async with self.engine.connect() as connection:
                raw = await connection.get_raw_connection()
                with statement_span(self.engine.sync_engine, text):
                    records = await raw.driver_connection.fetch(text, *arguments)  # type: ignore[union-attr]
        make, result = shape.row._make, shape.result
        if not any(result):
            return [make(record) for record in records]
        return [
            make(
                [
                    v if convert is None else convert(v)
                    for convert, v in zip(result, record, strict=True)
                ]
            )
            for record in records
        ]

    async def _sqlite(self, text: str, arguments: list[Any]) -> Any:
        """On a connection of the pool itself: on SQLite a reading connection is handed back
        as it is (no reset, `create_engine(reads=True)`), so neither taking it nor handing it
        back waits for anything, and SQLAlchemy's connection object around it (and the task
        that shields its closing) would only cost time."""
        sync_engine = self.engine.sync_engine
        pooled = await greenlet_spawn(sync_engine.raw_connection)
        try:
            with statement_span(sync_engine, text):
                return await pooled.driver_connection.execute_fetchall(text, arguments)  # type: ignore[union-attr]
        finally:
            await greenlet_spawn(pooled.close)

    def _shape(self, statement: AnySelect, key: Any) -> _Shape | None:
        try:
            return self._shapes[key.key]
        except KeyError:
            pass
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
            self._texts.clear()
        compiled = statement.compile(dialect=self.dialect, cache_key=key)
        shape = _compile(compiled, self.dialect)
        self._shapes[key.key] = shape
        return shape

    def _text(
        self, shape: _Shape, values: Mapping[str, Any], lengths: tuple[int, ...]
    ) -> tuple[str, tuple[tuple[str, bool], ...]]:
        key = (id(shape), lengths)  # a shape lives as long as its texts (both cleared at once)
        try:
            return self._texts[key]
        except KeyError:
            pass
        if len(self._texts) >= MAX_TEXTS:
            self._texts.clear()
        numbered = self.driver == "asyncpg"
        order: list[tuple[str, bool]] = []
        singles = iter(shape.single)
        count = 0

        def mark() -> str:
            nonlocal count
            count += 1
            return f"${count}" if numbered else "?"

        def placeholder(match: re.Match[str]) -> str:
            spread = match.group("spread")
            if spread is not None:
                order.append((spread, True))
                return ", ".join(mark() for _ in values[spread])
            number = match.group("number") if numbered else None
            order.append(
                (next(singles) if number is None else shape.single[int(number) - 1], False)
            )
            return mark()

        assert self.driver is not None
        text = _PLACEHOLDERS[self.driver].sub(placeholder, shape.compiled.string)
        spread_order = tuple(order)
        self._texts[key] = (text, spread_order)
        return text, spread_order

    async def _through_sqlalchemy(
        self, statement: AnySelect, parameters: Mapping[str, Any] | None
    ) -> list[Any]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(statement, parameters)).all())


def _compile(compiled: Any, dialect: Any) -> _Shape | None:
    if compiled.escaped_bind_names or compiled.literal_execute_params:
        return None
    positions = compiled.positiontup
    if positions is None:
        return None
    expanding = tuple(sorted({compiled.bind_names[p] for p in compiled.post_compile_params}))
    single = tuple(name for name in positions if name not in expanding)
    keys = [column[0] for column in compiled._result_columns]
    try:
        result = tuple(
            column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
        )
    except TypeError:  # a type whose conversion needs the driver's description of the column
        return None
    return _Shape(
        compiled=compiled,
        expanding=expanding,
        single=single,
        bind=dict(compiled._bind_processors),
        result=result,
        row=namedtuple("Row", keys, rename=True),
    )
