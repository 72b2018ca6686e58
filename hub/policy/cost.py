"""Static and actual query cost, after the GraphQL cost specification's `@cost`/`@listSize`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NamedTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    Undefined,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_abstract_type,
    is_composite_type,
    is_list_type,
    value_from_ast_untyped,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from hub.errors import BadUserInput
from hub.policy.cost_policy import CostPolicy, ListSize, Tier, Window, parse_cost_policy

__all__ = [
    "CostEstimate",
    "CostPolicy",
    "FieldCost",
    "ListSize",
    "Tier",
    "Window",
    "actual_cost",
    "estimate_cost",
    "parse_cost_policy",
]

_META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


@dataclass(frozen=True, slots=True)
class FieldCost:
    """One selected field: what its own weight adds up to over the `count` times it runs;
    `days`, for a field of `windows`, the days of the window each run makes a source read."""

    path: str
    coordinate: str
    cost: int
    count: int
    days: int | None = None


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The total and the rows it is the sum of, in document order."""

    total: int
    breakdown: list[FieldCost]


@dataclass(frozen=True, slots=True)
class _Sized:
    fields: frozenset[str]
    size: int


@dataclass(slots=True)
class _Walk:
    schema: GraphQLSchema
    policy: CostPolicy
    variables: dict[str, Any]
    fragments: dict[str, FragmentDefinitionNode]
    rows: dict[tuple[str, str], list[int]]
    days: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    plans: dict[tuple[int, str, str | None], list[_Step]] = dataclasses.field(default_factory=dict)
    """What `_actual` reads of a selection set, worked out once per set and type: a list
    repeats the same selection for each of its items."""
    aliased: dict[int, bool] = dataclasses.field(default_factory=dict)
    """Per selection set on an abstract type: whether a field answers under `__typename`."""


_Step = tuple[str, int, SelectionSetNode | None, GraphQLNamedType]
"""(response key, the field's own weight, its sub-selection, the type it returns)"""


def estimate_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    policy: CostPolicy,
) -> CostEstimate:
    """The static cost of the operation `operation_name` would run, field by field.

    A field costs its weight (its `@cost`, else its type's: objects 1, leaves 0) plus the
    weights of the arguments it is given, plus, for a field that reads a date window
    (`windows`), its price per day times the days of the window, each time it is resolved. A
    list multiplies what is selected under it by its size: the slicing argument's value
    (`first: 20`, from a literal or a variable; null or absent means the argument's default),
    else its assumed size, else (for a field of `windows`) one item per day of its window,
    else the default; a connection passes that size to its `sizedFields` (`edges`). As in
    the IBM draft, a list field's own weight is paid once per resolution, not once per item.

    BAD_USER_INPUT when a field whose list size requires exactly one slicing argument gets
    none or several. Fragments are costed once per use; a cyclic spread is not followed.
    """
    walk = _start(schema, document, operation_name, variables, policy)
    if walk is None:
        return CostEstimate(0, [])
    state, operation, root = walk
    _estimate(state, operation.selection_set, root, 1, "", None)
    rows = [
        FieldCost(path, coordinate, c, n, state.days.get((path, coordinate)))
        for (path, coordinate), (c, n) in state.rows.items()
    ]
    return CostEstimate(sum(row.cost for row in rows), rows)


def actual_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
    policy: CostPolicy,
) -> int:
    """The cost of what was returned: real list lengths, null objects selecting nothing.

    Field weights are the estimate's, so `estimate - actual` is what a short page refunds.
    """
    walk = _start(schema, document, operation_name, variables, policy)
    if walk is None or data is None:
        return 0
    state, operation, root = walk
    return _actual(state, operation.selection_set, root, data)


class FieldWeights:
    """Each field's own weight in one request, its arguments read from the request's
    variables: what resolving the field once costs. The planned executor charges it for each
    object it resolves the field for, which is what `actual_cost` finds in the answer."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        *,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        policy: CostPolicy,
    ) -> None:
        walk = _start(schema, document, operation_name, variables, policy)
        self._walk = None if walk is None else walk[0]

    def of(self, owner: GraphQLNamedType, field: FieldNode) -> int:
        definition = _definition(owner, field.name.value)
        if self._walk is None or definition is None or field.name.value == "__typename":
            return 0
        coordinate = f"{owner.name}.{field.name.value}"
        return _own_weight(self._walk, field, coordinate, definition)


def _start(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    policy: CostPolicy,
) -> tuple[_Walk, OperationDefinitionNode, GraphQLObjectType] | None:
    operation = get_operation_ast(document, operation_name)
    root = None if operation is None else _root_type(schema, operation.operation)
    if operation is None or root is None:
        return None
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            values[definition.variable.name.value] = value_from_ast_untyped(
                definition.default_value
            )
    values.update(variables or {})
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return _Walk(schema, policy, values, fragments, {}), operation, root


def _root_type(schema: GraphQLSchema, operation: OperationType) -> GraphQLObjectType | None:
    return {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation]


def _estimate(
    walk: _Walk,
    selection_set: SelectionSetNode,
    parent: GraphQLNamedType,
    count: int,
    path: str,
    sized: _Sized | None,
) -> None:
    for field, owner in _fields(walk, selection_set, parent, frozenset(), None):
        definition = _definition(owner, field.name.value)
        if definition is None:
            continue
        coordinate = f"{owner.name}.{field.name.value}"
        key = field.alias.value if field.alias else field.name.value
        field_path = f"{path}.{key}" if path else key
        row = walk.rows.setdefault((field_path, coordinate), [0, 0])
        row[0] += count * _own_weight(walk, field, coordinate, definition)
        row[1] += count
        window = walk.policy.window_of(coordinate)
        if window is not None:
            walk.days[(field_path, coordinate)] = _window_days(walk, field, definition, window)
        named = get_named_type(definition.type)
        if field.selection_set is None or not is_composite_type(named):
            continue
        is_list = is_list_type(get_nullable_type(definition.type))
        rule = walk.policy.list_size_of(coordinate)
        size = _size(walk, field, definition, coordinate, rule)
        multiplier, inner = (size if is_list else 1), None
        if sized is not None and field.name.value in sized.fields:
            multiplier = sized.size
        elif rule is not None and rule.sized_fields:
            multiplier = walk.policy.default_list_size_of(owner.name) if is_list else 1
            inner = _Sized(rule.sized_fields, size)
        _estimate(walk, field.selection_set, named, count * multiplier, field_path, inner)


def _actual(
    walk: _Walk, selection_set: SelectionSetNode, parent: GraphQLNamedType, value: Mapping[str, Any]
) -> int:
    total = 0
    typename = _typename(walk, selection_set, parent, value)
    for key, weight, inner, named in _plan(walk, selection_set, parent, typename):
        if key not in value:
            continue
        total += weight
        if inner is not None:
            for item in _objects(value[key]):
                total += _actual(walk, inner, named, item)
    return total


def _typename(
    walk: _Walk, selection_set: SelectionSetNode, parent: GraphQLNamedType, value: Mapping[str, Any]
) -> str | None:
    """The type of `value`: `parent` when that is an object type; else what `__typename`
    says, unless a caller's field answers under that key (`__typename: name`)."""
    if isinstance(parent, GraphQLObjectType):
        return parent.name
    typename = value.get("__typename")
    if not isinstance(typename, str):
        return None
    key = id(selection_set)
    if key not in walk.aliased:
        walk.aliased[key] = _aliases_typename(walk, selection_set, frozenset())
    return None if walk.aliased[key] else typename


def _aliases_typename(
    walk: _Walk, selection_set: SelectionSetNode, expanding: frozenset[str]
) -> bool:
    for selection in selection_set.selections:
        inner, seen = None, expanding
        if isinstance(selection, FieldNode):
            alias = selection.alias.value if selection.alias else None
            if alias == "__typename" and selection.name.value != "__typename":
                return True
        elif isinstance(selection, InlineFragmentNode):
            inner = selection.selection_set
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in expanding:
            fragment = walk.fragments.get(selection.name.value)
            inner = None if fragment is None else fragment.selection_set
            seen = expanding | {selection.name.value}
        if inner is not None and _aliases_typename(walk, inner, seen):
            return True
    return False


def _plan(
    walk: _Walk, selection_set: SelectionSetNode, parent: GraphQLNamedType, typename: str | None
) -> list[_Step]:
    plan_key = (id(selection_set), parent.name, typename)
    plan = walk.plans.get(plan_key)
    if plan is None:
        plan = []
        for field, owner in _fields(walk, selection_set, parent, frozenset(), typename):
            definition = _definition(owner, field.name.value)
            if definition is None:
                continue
            coordinate = f"{owner.name}.{field.name.value}"
            named = get_named_type(definition.type)
            inner = field.selection_set if is_composite_type(named) else None
            key = field.alias.value if field.alias else field.name.value
            plan.append((key, _own_weight(walk, field, coordinate, definition), inner, named))
        walk.plans[plan_key] = plan
    return plan


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _fields(
    walk: _Walk,
    selection_set: SelectionSetNode,
    parent: GraphQLNamedType,
    expanding: frozenset[str],
    typename: str | None,
) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
    """Fields selected on `parent`, through fragments; `__typename` is free and left out."""
    for selection in selection_set.selections:
        if not _included(selection, walk.variables):
            continue
        if isinstance(selection, FieldNode):
            if selection.name.value != "__typename":
                yield selection, parent
            continue
        inner_expanding = expanding
        if isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = walk.fragments.get(name)
            if fragment is None or name in expanding:
                continue
            condition: NamedTypeNode | None = fragment.type_condition
            inner = fragment.selection_set
            inner_expanding = expanding | {name}
        elif isinstance(selection, InlineFragmentNode):
            condition, inner = selection.type_condition, selection.selection_set
        else:
            continue
        target = parent if condition is None else walk.schema.get_type(condition.name.value)
        if target is None or not _applies(walk.schema, target, typename):
            continue
        yield from _fields(walk, inner, target, inner_expanding, typename)


def _applies(schema: GraphQLSchema, condition: GraphQLNamedType, typename: str | None) -> bool:
    if typename is None or condition.name == typename:
        return True
    concrete = schema.get_type(typename)
    if not is_abstract_type(condition) or not isinstance(concrete, GraphQLObjectType):
        return False
    return schema.is_sub_type(condition, concrete)


def _included(selection: SelectionNode, variables: dict[str, Any]) -> bool:
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        value: Any = True
        for argument in directive.arguments or ():
            if argument.name.value == "if":
                value = value_from_ast_untyped(argument.value, variables)
        if (name == "skip") == (value is True):
            return False
    return True


def _definition(owner: GraphQLNamedType, name: str) -> GraphQLField | None:
    if name in _META_FIELDS:
        return _META_FIELDS[name]
    if not isinstance(owner, GraphQLObjectType | GraphQLInterfaceType):
        return None
    field: GraphQLField | None = owner.fields.get(name)
    return field


def _own_weight(walk: _Walk, field: FieldNode, coordinate: str, definition: GraphQLField) -> int:
    policy = walk.policy
    weight = policy.weight_of(coordinate, get_named_type(definition.type))
    for argument in field.arguments or ():
        weight += policy.argument_weights.get(f"{coordinate}({argument.name.value}:)", 0)
    window = policy.window_of(coordinate)
    if window is not None:
        weight += window.per_day * _window_days(walk, field, definition, window)
    return weight


def _window_days(walk: _Walk, field: FieldNode, definition: GraphQLField, window: Window) -> int:
    since = _argument_at(walk, field, definition, window.from_path)
    return window.days(since, _argument_at(walk, field, definition, window.to_path))


def _argument_at(
    walk: _Walk, field: FieldNode, definition: GraphQLField, path: tuple[str, ...]
) -> Any:
    """The value at `path` (an argument, then fields of an input object), from literals,
    variables or the argument's default."""
    name, *inside = path
    node = next((arg.value for arg in field.arguments or () if arg.name.value == name), None)
    if node is not None:
        value = value_from_ast_untyped(node, walk.variables)
    else:
        argument = definition.args.get(name)
        value = None if argument is None else argument.default_value
    for key in inside:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _size(
    walk: _Walk,
    field: FieldNode,
    definition: GraphQLField,
    coordinate: str,
    rule: ListSize | None,
) -> int:
    """The slicing argument's value (the largest, if several), else the assumed size; a field
    of `windows` without a rule holds at most one item per day of its window."""
    owner = coordinate.split(".", 1)[0]
    if rule is None:
        window = walk.policy.window_of(coordinate)
        if window is not None:
            return _window_days(walk, field, definition, window)
        return walk.policy.default_list_size_of(owner)
    given = {argument.name.value: argument.value for argument in field.arguments or ()}
    sizes: list[int] = []
    for name in rule.slicing_arguments:
        value: Any = Undefined
        if name in given:
            node = given[name]
            value = (
                walk.variables.get(node.name.value, Undefined)
                if isinstance(node, VariableNode)
                else value_from_ast_untyped(node, walk.variables)
            )
        if value is None or value is Undefined:
            # `first: null` and no `first` both mean the argument's default page size.
            argument = definition.args.get(name)
            value = None if argument is None else argument.default_value
        if isinstance(value, float) and value.is_integer():
            # JSON may send `100.0` for an Int variable; GraphQL coerces it to 100.
            value = int(value)
        if isinstance(value, list):
            sizes.append(len(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            sizes.append(max(0, value))
    if rule.require_one_slicing_argument and rule.slicing_arguments and len(sizes) != 1:
        names = ", ".join(f"`{name}`" for name in rule.slicing_arguments)
        raise BadUserInput(f"{coordinate} needs exactly one of {names}.", coordinate=coordinate)
    if sizes:
        return max(sizes)
    if rule.assumed_size is not None:
        return rule.assumed_size
    return walk.policy.default_list_size_of(owner)
