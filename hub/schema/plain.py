"""Plain objects: selections whose every field just reads an attribute and serializes a leaf,
completed in one pass instead of graphql-core's per-field machinery.

A metric point, a money amount, an audience share: most of a dashboard's fields are plain
(no resolver, no arguments, no field extension such as consent). graphql-core would build a
`GraphQLResolveInfo`, call strawberry's basic resolver and dispatch on the type for each; a
plan, worked out once per selection set and request, reads them straight. Anything out of
the ordinary (a null in a non-null field, a value the scalar will not serialize) is left to
graphql-core, which raises the error at its path as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from graphql import (
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import GroupedFieldSet

STRAWBERRY_FIELD = "strawberry-definition"
"""Where strawberry keeps a GraphQL field's definition (`GraphQLCoreConverter`)."""


class Step(NamedTuple):
    """How one response key of a plain object is filled."""

    key: str
    kind: str  # "typename", "leaf", "leaves", "object" or "objects"
    attribute: str  # the Python attribute; the type name for "typename"
    nullable: bool
    serialize: Callable[[Any], Any] | None = None  # leaf and leaves
    items_nullable: bool = True  # leaves and objects
    plan: tuple[Step, ...] | None = None  # object and objects


Plan = tuple[Step, ...]
SubPlan = Callable[[GraphQLObjectType, Any], Plan | None]


class NotPlain(Exception):
    """A value this path does not complete; graphql-core's path does."""


def plan_of(parent: GraphQLObjectType, fields: GroupedFieldSet, sub_plan: SubPlan) -> Plan | None:
    """The steps of a selection set, or None when one of its fields is not plain.
    `sub_plan(type, field_details)` plans a field's own selection set."""
    steps = []
    for key, details in fields.items():
        name = details[0].node.name.value
        if name == "__typename":
            steps.append(Step(key, "typename", parent.name, False))
            continue
        field = parent.fields.get(name)
        definition: Any = None if field is None else field.extensions.get(STRAWBERRY_FIELD)
        if field is None or field.args or not getattr(definition, "is_basic_field", False):
            return None
        step = _step(key, definition.python_name, field.type, details, sub_plan)
        if step is None:
            return None
        steps.append(step)
    return tuple(steps)


def _step(
    key: str, attribute: str, type_: GraphQLOutputType, details: Any, sub_plan: SubPlan
) -> Step | None:
    nullable = not is_non_null_type(type_)
    named = get_nullable_type(type_)
    if is_leaf_type(named):
        return Step(key, "leaf", attribute, nullable, serialize=named.serialize)
    if is_object_type(named):
        plan = _object_plan(named, details, sub_plan)
        return None if plan is None else Step(key, "object", attribute, nullable, plan=plan)
    if not is_list_type(named):
        return None
    item_type = named.of_type
    items_nullable = not is_non_null_type(item_type)
    item = get_nullable_type(item_type)
    if is_leaf_type(item):
        return Step(
            key,
            "leaves",
            attribute,
            nullable,
            serialize=item.serialize,
            items_nullable=items_nullable,
        )
    if is_object_type(item):
        plan = _object_plan(item, details, sub_plan)
        if plan is not None:
            return Step(
                key, "objects", attribute, nullable, items_nullable=items_nullable, plan=plan
            )
    return None


def _object_plan(type_: GraphQLNamedType, details: Any, sub_plan: SubPlan) -> Plan | None:
    assert isinstance(type_, GraphQLObjectType)
    if type_.is_type_of is not None:  # graphql-core would ask it; leave those to it
        return None
    return sub_plan(type_, details)


def complete(plan: Plan, source: Any) -> dict[str, Any]:
    """The object's answer; `NotPlain` when a value needs graphql-core's path (which the
    caller also takes on any other error here, to raise it at its own path)."""
    data: dict[str, Any] = {}
    for step in plan:
        kind = step.kind
        if kind == "typename":
            data[step.key] = step.attribute
            continue
        value = getattr(source, step.attribute)
        if value is None:
            if not step.nullable:
                raise NotPlain
            data[step.key] = None
        elif kind == "leaf":
            data[step.key] = _leaf(step.serialize, value)  # type: ignore[arg-type]
        elif kind == "object":
            data[step.key] = complete(step.plan, value)  # type: ignore[arg-type]
        else:
            if not isinstance(value, list | tuple):
                raise NotPlain
            data[step.key] = [_item(step, item) for item in value]
    return data


def _item(step: Step, item: Any) -> Any:
    if item is None:
        if not step.items_nullable:
            raise NotPlain
        return None
    if step.kind == "leaves":
        return _leaf(step.serialize, item)  # type: ignore[arg-type]
    return complete(step.plan, item)  # type: ignore[arg-type]


def _leaf(serialize: Callable[[Any], Any], value: Any) -> Any:
    try:
        serialized = serialize(value)
    except Exception:
        raise NotPlain from None
    if serialized is None or serialized is Undefined:
        raise NotPlain
    return serialized
