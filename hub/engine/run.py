"""Running a plan: one level at a time, each field for all its parent objects at once.

The answer is built in place: an object's dict or a list is put where it belongs before its
contents are filled, and an error in a non-null position nulls the nearest nullable
position above it, as graphql-core does (its `CollectedErrors` keeps the same record of
nulled positions, so that an error below one is not reported again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, Undefined, located_error
from graphql.execution.executor import Executor, invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, inspect, is_iterable

from hub.engine.plan import Kind, Plan, Selection, Shape, Step


@dataclass(slots=True)
class Batch:
    """What a batch resolver is given: every parent of a level, the field's arguments
    (coerced once) and the request's context. It answers one value per parent, in order;
    a value may be an exception, which becomes that parent's field error."""

    context: Any
    parents: list[Any]
    arguments: dict[str, Any]
    step: Step


BatchResolver = Callable[[Batch], Awaitable[list[Any]]]


class Slot:
    """A position of the answer: where a value goes, and what an error there nulls. Its
    path is made only when asked for (an error, a resolver's info)."""

    __slots__ = ("_path", "container", "key", "nullable", "owner", "typename")

    def __init__(
        self,
        container: Any,
        key: str | int,
        nullable: bool,
        owner: Slot | None,
        typename: str | None = None,
    ) -> None:
        self.container = container
        self.key = key
        self.nullable = nullable
        self.owner = owner
        self.typename = typename
        self._path: Path | None = None

    @property
    def path(self) -> Path | None:
        if self._path is None and self.owner is not None:
            self._path = Path(self.owner.path, self.key, self.typename)
        return self._path


class Node:
    """An object of a level: its source value, its answer, and where that answer sits."""

    __slots__ = ("data", "slot", "value")

    def __init__(self, value: Any, data: dict[str, Any], slot: Slot) -> None:
        self.value = value
        self.data = data
        self.slot = slot


class Level:
    """The objects of one selection set being filled. `settled` is set once the fields of
    the level that can still null those objects (non-null fields that wait for their
    values) are complete and the objects they failed in are nulled; None when there are none."""

    __slots__ = ("above", "settled")

    def __init__(self, above: Level | None) -> None:
        self.above = above
        self.settled: asyncio.Event | None = None


class Countdown:
    """The fields of a level that wait for their values: once the last is complete, the
    objects its non-null fields failed in are nulled and the level is `settled`."""

    __slots__ = ("deferred", "left", "run", "settled")

    def __init__(self, run: Run, deferred: Deferred) -> None:
        self.run = run
        self.deferred = deferred
        self.left = 0
        self.settled: asyncio.Event | None = None

    def done(self) -> None:
        self.left -= 1
        if not self.left:
            self.run._settle(self.deferred)
            if self.settled is not None:
                self.settled.set()


Buckets = dict[Selection, list[Node]]
Deferred = list[tuple[GraphQLError, "Slot | None"]]
"""Errors of non-null fields, and the object each nulls once its level is complete."""


class Run:
    """One request's execution of a plan, on the graphql-core executor it stands in for."""

    def __init__(self, executor: Executor[Any], plan: Plan) -> None:
        self.executor = executor
        self.plan = plan
        self.errors = executor.collected_errors
        self.context = executor.context_value
        self.data: dict[str, Any] | None = None
        self.resolved: list[tuple[Any, list[Any], int]] = []
        """(type, field nodes, objects) per step run: what the cost actually used is made of."""

    async def execute(self) -> Any:
        root = self.plan.root
        if self.context is not None and hasattr(self.context, "resolved"):
            self.context.resolved = self.resolved
        self.data = data = dict.fromkeys(root.keys)
        slot = Slot(self, "data", False, None)
        await self._select(root, [Node(self.executor.root_value, data, slot)], None)
        return self.executor.build_response(self.data)

    # -- levels -------------------------------------------------------------------------

    async def _select(self, selection: Selection, nodes: list[Node], above: Level | None) -> None:
        """Fill every step of `selection` for `nodes`; then the next levels, concurrently.

        Fields that wait for their values are fetched concurrently, each completed as soon as
        its values are in, and its children started then (so that the next level's sources
        are asked as soon as their keys are known). An error in a nullable position is
        reported at once; one that nulls the object itself (a non-null field) does so once
        every field of the level is complete, as graphql-core's does: it reports the errors
        of the fields failing together with it, and none of those under the object after.

        A selection that reads personal data starts once every level above it is settled,
        on the objects still standing: a person's data is not read, decided and audited
        for an object a failing field above is about to null."""
        if selection.personal and above is not None:
            await _settled(above)
            nodes = self._live(nodes)
        level = Level(above)
        may_null = False
        nested: list[Awaitable[None]] = []
        deferred: Deferred = []
        countdown = Countdown(self, deferred)
        for step in selection.steps:
            live = self._live(nodes)
            if not live:
                break
            kind = step.kind
            if kind is not Kind.TYPENAME:
                self.resolved.append((step.parent_type, step.nodes, len(live)))
            if kind is Kind.TYPENAME:
                name = step.parent_type.name
                key = step.key
                for node in live:
                    node.data[key] = name
            elif kind is Kind.ATTRIBUTE:
                buckets: Buckets = {}
                if step.shape.leaf is not None:
                    self._leaves(step, live, deferred)
                else:
                    attribute = step.attribute
                    for node in live:
                        try:
                            value = getattr(node.value, attribute)
                        except Exception as error:
                            value = error
                        slot = self._field_slot(step, node)
                        self._complete(step, step.shape, slot, value, buckets, deferred)
                nested.extend(self._select(s, n, level) for s, n in buckets.items())
            else:
                countdown.left += 1
                may_null = may_null or not step.shape.nullable
                nested.append(self._resolve(step, live, countdown, deferred, level))
        if countdown.left:
            if may_null or deferred:
                level.settled = countdown.settled = asyncio.Event()
        else:
            self._settle(deferred)
        if nested:
            await _gather(nested)

    def _live(self, nodes: list[Node]) -> list[Node]:
        """The nodes no error has nulled (all of them while there is no error at all)."""
        errors = self.errors
        if not errors.errors:
            return nodes
        return [node for node in nodes if not errors.has_nulled_position(node.slot.path)]

    def _leaves(self, step: Step, nodes: list[Node], deferred: Deferred) -> None:
        """An attribute holding a scalar or enum, for every node: read and coerced in one
        loop; anything out of the ordinary takes `_complete`, which raises it at its path."""
        attribute, key = step.attribute, step.key
        shape = step.shape
        leaf, nullable = shape.leaf, shape.nullable
        assert leaf is not None
        for node in nodes:
            try:
                value = getattr(node.value, attribute)
                if value is None:
                    if nullable:
                        node.data[key] = None
                        continue
                else:
                    coerced = leaf(value)
                    if coerced is not None and coerced is not Undefined:
                        node.data[key] = coerced
                        continue
            except Exception as error:
                value = error
            self._complete(step, shape, self._field_slot(step, node), value, {}, deferred)

    async def _resolve(
        self,
        step: Step,
        nodes: list[Node],
        countdown: Countdown,
        deferred: Deferred,
        level: Level,
    ) -> None:
        """A field that needs its resolver, its batch resolver or a refusal, for `nodes`;
        then its children."""
        slots = [self._field_slot(step, node) for node in nodes]
        buckets: Buckets = {}
        try:
            try:
                values = await self._values(step, nodes, slots)
            except Exception as error:
                values = [error] * len(nodes)
            for slot, value in zip(slots, values, strict=True):
                self._complete(step, step.shape, slot, value, buckets, deferred)
        finally:
            countdown.done()
        if buckets:
            await _gather([self._select(s, n, level) for s, n in buckets.items()])

    def _settle(self, deferred: Deferred) -> None:
        """The objects that non-null fields of a level failed in: nulled now, in order."""
        for error, position in deferred:
            self._null(error, position)

    async def _values(self, step: Step, nodes: list[Node], slots: list[Slot]) -> list[Any]:
        if step.kind is Kind.DENIED:
            return [self._refusal(step) for _ in nodes]
        arguments = self._arguments(step)
        if step.kind is Kind.BATCH:
            parents = [node.value for node in nodes]
            values: list[Any] = await step.batch(Batch(self.context, parents, arguments, step))
            return values
        executor = self.executor
        field = step.field
        assert field is not None
        resolve = field.resolve or executor.field_resolver
        is_awaitable = executor.is_awaitable
        results: list[Any] = []
        waiting: list[int] = []
        for node, slot in zip(nodes, slots, strict=True):
            path = slot.path
            assert path is not None
            info = executor.build_resolve_info(field, step.nodes, step.parent_type, path)
            try:
                result = resolve(node.value, info, **arguments)
            except Exception as error:
                result = error
            if is_awaitable(result):
                waiting.append(len(results))
            results.append(result)
        if waiting:
            settled = await _settle([results[i] for i in waiting])
            for index, value in zip(waiting, settled, strict=True):
                results[index] = value
        if step.shape.item is not None:
            # A resolver may answer a list of awaitables (federation's `_entities` does).
            for index, value in enumerate(results):
                if isinstance(value, list) and any(is_awaitable(item) for item in value):
                    results[index] = await _settle_items(value, is_awaitable)
        return results

    def _arguments(self, step: Step) -> dict[str, Any]:
        if not step.has_arguments:
            return {}
        assert step.field is not None
        executor = self.executor
        return get_argument_values(
            step.field,
            step.nodes[0],
            executor.variable_values,
            step.details[0].fragment_variable_values,
            executor.hide_suggestions,
        )

    def _refusal(self, step: Step) -> Exception:
        from hub.schema.access import refusal

        return refusal(self.context, (step.parent_type.name, step.nodes[0].name.value))

    # -- completion ---------------------------------------------------------------------

    def _field_slot(self, step: Step, node: Node) -> Slot:
        return Slot(node.data, step.key, step.shape.nullable, node.slot, step.parent_type.name)

    def _complete(
        self,
        step: Step,
        shape: Shape,
        slot: Slot,
        value: Any,
        buckets: Buckets,
        deferred: Deferred,
    ) -> None:
        """Put `value`, completed as `shape` says, at `slot`; objects go to `buckets` for
        the next level. An error nulls the nearest nullable position."""
        try:
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                if not shape.nullable:
                    raise TypeError(
                        "Cannot return null for non-nullable field "
                        f"{step.parent_type.name}.{step.nodes[0].name.value}."
                    )
                slot.container[slot.key] = None
                return
            if shape.leaf is not None:
                coerced = shape.leaf(value)
                if coerced is Undefined or coerced is None:
                    raise TypeError(
                        f"Expected `{inspect(_named(shape))}.coerce_output_value("
                        f"{inspect(value)})` to return non-nullable value, returned:"
                        f" {inspect(coerced)}"
                    )
                slot.container[slot.key] = coerced
            elif shape.item is not None:
                self._complete_list(step, shape, slot, value, buckets, deferred)
            else:
                self._complete_object(step, shape, slot, value, buckets)
        except Exception as raw_error:
            self._fail(step, slot, raw_error, deferred)

    def _complete_list(
        self,
        step: Step,
        shape: Shape,
        slot: Slot,
        value: Any,
        buckets: Buckets,
        deferred: Deferred,
    ) -> None:
        if not is_iterable(value):
            raise GraphQLError(
                "Expected Iterable, but did not find one for field "
                f"'{step.parent_type.name}.{step.nodes[0].name.value}'."
            )
        item_shape = shape.item
        assert item_shape is not None
        items: list[Any] = []
        slot.container[slot.key] = items
        nullable = item_shape.nullable
        leaf = item_shape.leaf
        selection = item_shape.selection
        if selection is not None and selection.type.is_type_of is None:
            # Objects of one type: each a node of the next level, put in place here.
            keys = selection.keys
            nodes = buckets.setdefault(selection, [])
            for index, item in enumerate(value):
                if item is None or isinstance(item, Exception):
                    items.append(None)
                    item_slot = Slot(items, index, nullable, slot)
                    self._complete(step, item_shape, item_slot, item, buckets, deferred)
                    continue
                data = dict.fromkeys(keys)
                items.append(data)
                nodes.append(Node(item, data, Slot(items, index, nullable, slot)))
            return
        for index, item in enumerate(value):
            if leaf is not None and item is not None:
                try:
                    coerced = leaf(item)
                    if coerced is not None and coerced is not Undefined:
                        items.append(coerced)
                        continue
                except Exception:
                    pass
            items.append(None)
            item_slot = Slot(items, index, nullable, slot)
            self._complete(step, item_shape, item_slot, item, buckets, deferred)

    def _complete_object(
        self, step: Step, shape: Shape, slot: Slot, value: Any, buckets: Buckets
    ) -> None:
        selection = shape.selection
        if selection is None:
            selection = self._runtime_selection(step, shape, slot, value)
        type_ = selection.type
        if type_.is_type_of is not None and not type_.is_type_of(value, self._info(step, slot)):
            raise invalid_return_type_error(type_, value, step.details)
        data = dict.fromkeys(selection.keys)
        slot.container[slot.key] = data
        buckets.setdefault(selection, []).append(Node(value, data, slot))

    def _runtime_selection(self, step: Step, shape: Shape, slot: Slot, value: Any) -> Selection:
        """The selection of the object type an abstract-typed value resolves to."""
        abstract = _named(shape)
        executor = self.executor
        info = self._info(step, slot)
        resolve_type = getattr(abstract, "resolve_type", None) or executor.type_resolver
        runtime = resolve_type(value, info, abstract)
        if executor.is_awaitable(runtime):  # pragma: no cover - no such type in the schema
            raise TypeError("An abstract type resolved its type asynchronously.")
        selections = shape.selections or {}
        type_ = executor.ensure_valid_runtime_type(runtime, abstract, step.details, info, value)
        return selections[type_.name]

    def _info(self, step: Step, slot: Slot) -> Any:
        assert step.field is not None and slot.path is not None
        return self.executor.build_resolve_info(step.field, step.nodes, step.parent_type, slot.path)

    def _fail(self, step: Step, slot: Slot, raw_error: Exception, deferred: Deferred) -> None:
        """The error at `slot`: reported, and the nearest nullable position up to the field
        nulled; when that is the field's object or above, once its level is complete."""
        path = slot.path
        assert path is not None
        error = located_error(raw_error, step.nodes, path.as_list())
        position: Slot | None = slot
        while position is not None and not position.nullable:
            if position.typename is not None:  # a non-null field: its object goes
                deferred.append((error, position.owner))
                return
            position = position.owner
        self._null(error, position)

    def _null(self, error: GraphQLError, position: Slot | None) -> None:
        """Report `error` at the nearest nullable position from `position` up, and null it
        (the whole answer when there is none)."""
        while position is not None and not position.nullable:
            position = position.owner
        if position is None:
            self.errors.add(error, None)
            self.data = None
            return
        self.errors.add(error, position.path)
        position.container[position.key] = None


def _named(shape: Shape) -> Any:
    type_: Any = shape.type
    while hasattr(type_, "of_type"):
        type_ = type_.of_type
    return type_


async def _settle(awaitables: list[Any]) -> list[Any]:
    """Their values, an exception standing for each that failed; cancellation goes on. One
    alone is awaited in this task (gathering it would make it a task of its own)."""
    if len(awaitables) == 1:
        try:
            return [await awaitables[0]]
        except Exception as error:
            return [error]
    settled = await asyncio.gather(*awaitables, return_exceptions=True)
    for value in settled:
        if isinstance(value, BaseException) and not isinstance(value, Exception):
            raise value
    return settled


async def _settle_items(items: list[Any], is_awaitable: Callable[[Any], bool]) -> list[Any]:
    waiting = [index for index, item in enumerate(items) if is_awaitable(item)]
    settled = await _settle([items[index] for index in waiting])
    values = list(items)
    for index, value in zip(waiting, settled, strict=True):
        values[index] = value
    return values


async def _settled(level: Level | None) -> None:
    """Once `level` and every level above it are settled."""
    while level is not None:
        if level.settled is not None:
            await level.settled.wait()
        level = level.above


async def _gather(awaitables: list[Awaitable[None]]) -> None:
    """Await them concurrently: the first in this task (a level's first field costs no task
    of its own), the others in tasks started before it. A failure or a cancellation of the
    first cancels the others."""
    first, *rest = awaitables
    if not rest:
        await first
        return
    others = [asyncio.ensure_future(awaitable) for awaitable in rest]
    try:
        await first
    except BaseException:
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        raise
    await asyncio.gather(*others)
