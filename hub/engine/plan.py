"""Plans: an operation's selections worked out once, as a tree of steps.

A plan depends on the document, the operation, the values of the variables its `@skip` and
`@include` read, and the caller's policy class (the fields denied to it); it is kept with the
parsed document and reused by every request that shares those. Arguments are not part of a
plan: they are coerced once per step and request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_nullable_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    FragmentDetails,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues

from hub.policy.access import Coordinate

STRAWBERRY_FIELD = "strawberry-definition"
"""Where strawberry keeps a GraphQL field's definition (`GraphQLCoreConverter`)."""

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class Unplannable(Exception):
    """The operation runs on graphql-core, whole; `reason` is a bounded label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Kind(Enum):
    TYPENAME = "typename"
    """`__typename`: the parent type's name."""
    ATTRIBUTE = "attribute"
    """A field without resolver: an attribute of the parent object."""
    RESOLVE = "resolve"
    """A field's own resolver, called for each parent, all of a level at once."""
    BATCH = "batch"
    """A batch resolver: one call for every parent of a level."""
    DENIED = "denied"
    """A field the caller may not use: FORBIDDEN at each of its paths."""


@dataclass(eq=False, slots=True)
class Shape:
    """How a field's value is completed: its (nullable) type, and what it holds."""

    type: GraphQLOutputType
    """The field's declared type, wrappers included (errors name it)."""
    nullable: bool
    leaf: Callable[[Any], Any] | None = None
    item: Shape | None = None
    selection: Selection | None = None
    selections: dict[str, Selection] | None = None
    """For an abstract type: the selection of each possible object type, by name."""


@dataclass(eq=False, slots=True)
class Step:
    """How one response key of an object is filled."""

    key: str
    parent_type: GraphQLObjectType
    field: GraphQLField | None
    details: FieldDetailsList
    nodes: list[FieldNode]
    kind: Kind
    shape: Shape
    attribute: str = ""
    batch: Any = None
    has_arguments: bool = False

    @property
    def coordinate(self) -> str:
        return f"{self.parent_type.name}.{self.nodes[0].name.value}"


@dataclass(eq=False, slots=True)
class Selection:
    """The steps of one selection set on one object type, in response order."""

    type: GraphQLObjectType
    steps: tuple[Step, ...] = ()
    keys: tuple[str, ...] = ()
    personal: bool = False
    """A step reads personal data: it runs only once no failing field above can still null
    its objects, so that no personal value is read, decided and audited for nothing."""


@dataclass(eq=False, slots=True)
class Plan:
    root: Selection
    coordinates: frozenset[str] = field(default_factory=frozenset)
    """Every field the plan may resolve, as `Type.field`."""


@dataclass(frozen=True, slots=True)
class Planner:
    """What planning needs of a request: its schema, document and variables, the caller's
    denied fields and the batch resolvers by coordinate."""

    schema: GraphQLSchema
    fragments: dict[str, FragmentDetails]
    variables: VariableValues
    operation: OperationDefinitionNode
    denied: frozenset[Coordinate]
    batches: Mapping[str, Any]
    hide_suggestions: bool = False
    personal: frozenset[str] = frozenset()
    """The personal-data fields, as `Type.field` (the consent policy's)."""

    def plan(self) -> Plan:
        """The operation's plan, or `Unplannable` with the reason it runs on graphql-core."""
        operation = self.operation
        if operation.operation is not OperationType.QUERY:
            raise Unplannable(operation.operation.value)
        root = self.schema.query_type
        assert root is not None
        collected = collect_fields(
            self.schema,
            self.fragments,
            self.variables,
            root,
            operation,
            self.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unplannable("defer")
        coordinates: set[str] = set()
        selection = self._selection(root, collected.grouped_field_set, coordinates)
        return Plan(selection, frozenset(coordinates))

    def _selection(
        self, type_: GraphQLObjectType, fields: GroupedFieldSet, coordinates: set[str]
    ) -> Selection:
        steps = tuple(
            self._step(type_, key, details, coordinates) for key, details in fields.items()
        )
        personal = self.personal
        reads_personal = any(
            step.field is not None and step.coordinate in personal for step in steps
        )
        return Selection(type_, steps, tuple(fields), reads_personal)

    def _step(
        self,
        parent: GraphQLObjectType,
        key: str,
        details: FieldDetailsList,
        coordinates: set[str],
    ) -> Step:
        nodes = [detail.node for detail in details]
        name = nodes[0].name.value
        if any(detail.defer_usage is not None for detail in details) or any(
            directive.name.value == "stream"
            for node in nodes
            for directive in node.directives or ()
        ):
            raise Unplannable("defer")
        if name in INTROSPECTION_FIELDS:
            raise Unplannable("introspection")
        if name == "__typename":
            shape = Shape(type=_TYPENAME_TYPE, nullable=False)
            return Step(key, parent, None, details, nodes, Kind.TYPENAME, shape)
        field_def = self.schema.get_field(parent, name)
        if field_def is None:  # validation guarantees it; graphql-core would skip it
            raise Unplannable("unknown_field")
        coordinates.add(f"{parent.name}.{name}")
        shape = self._shape(field_def.type, details, coordinates)
        has_arguments = bool(field_def.args or nodes[0].arguments)
        if (parent.name, name) in self.denied:
            return Step(key, parent, field_def, details, nodes, Kind.DENIED, shape)
        definition = field_def.extensions.get(STRAWBERRY_FIELD)
        # A field with strawberry extensions runs them through its own resolver.
        batch = (
            None
            if definition and definition.extensions
            else self.batches.get(f"{parent.name}.{name}")
        )
        if batch is not None:
            return Step(
                key, parent, field_def, details, nodes, Kind.BATCH, shape, "", batch, has_arguments
            )
        if definition is not None and definition.is_basic_field and not field_def.args:
            attribute = definition.python_name
            return Step(key, parent, field_def, details, nodes, Kind.ATTRIBUTE, shape, attribute)
        return Step(
            key, parent, field_def, details, nodes, Kind.RESOLVE, shape, "", None, has_arguments
        )

    def _shape(
        self, type_: GraphQLOutputType, details: FieldDetailsList, coordinates: set[str]
    ) -> Shape:
        nullable = not is_non_null_type(type_)
        named = get_nullable_type(type_)
        if is_leaf_type(named):
            return Shape(type_, nullable, leaf=named.coerce_output_value)
        if is_list_type(named):
            return Shape(type_, nullable, item=self._shape(named.of_type, details, coordinates))
        if is_object_type(named):
            selection = self._object(named, details, coordinates)
            return Shape(type_, nullable, selection=selection)
        if is_abstract_type(named):
            selections = {
                possible.name: self._object(possible, details, coordinates)
                for possible in self.schema.get_possible_types(named)
            }
            return Shape(type_, nullable, selections=selections)
        raise Unplannable("type")  # pragma: no cover - every output type is one of these

    def _object(
        self, type_: GraphQLObjectType, details: FieldDetailsList, coordinates: set[str]
    ) -> Selection:
        collected = collect_subfields(
            self.schema,
            self.fragments,
            self.variables,
            self.operation,
            type_,
            details,
            self.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise Unplannable("defer")
        return self._selection(type_, collected.grouped_field_set, coordinates)


def _typename_type() -> GraphQLOutputType:
    from graphql import GraphQLNonNull, GraphQLString

    return GraphQLNonNull(GraphQLString)


_TYPENAME_TYPE = _typename_type()
