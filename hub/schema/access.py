"""Field authorization: the access policy's denied fields, refused by the executor itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_operation_ast,
    is_object_type,
    visit,
)
from strawberry.extensions import SchemaExtension

from hub.errors import Forbidden, HubError, Unauthenticated
from hub.memo import IdentityMemo
from hub.policy.access import Coordinate

INTROSPECTION_ROOTS: tuple[Coordinate, ...] = (("Query", "__schema"), ("Query", "__type"))


def schema_coordinates(schema: GraphQLSchema) -> dict[str, list[str]]:
    """Every object type of the schema with its fields, plus the introspection roots."""
    types = {
        name: list(type_.fields)
        for name, type_ in schema.type_map.items()
        if is_object_type(type_) and not name.startswith("__")
    }
    types["Query"] = [*types["Query"], *(field for _, field in INTROSPECTION_ROOTS)]
    return types


class DenyFields:
    """graphql-core middleware refusing the request's denied fields before they resolve."""

    def __init__(self, denied: frozenset[Coordinate], context: Any) -> None:
        self.denied = denied
        self.context = context

    def resolve(self, next_: Callable[..., Any], root: Any, info: Any, **args: Any) -> Any:
        coordinate = (info.parent_type.name, info.field_name)
        if coordinate in self.denied:
            raise refusal(self.context, coordinate)
        return next_(root, info, **args)


def refusal(context: Any, coordinate: Coordinate) -> HubError:
    """The error of a field the caller may not use, noted for the audit trail."""
    context.denials.add(coordinate)
    if context.principal.is_anonymous:
        return Unauthenticated("This needs a bearer token.")
    name = f"{coordinate[0]}.{coordinate[1]}"
    return Forbidden(f"You may not use `{name}`.", coordinate=name)


class WholeRefusals(SchemaExtension):
    """Operations refused whole, after validation and before anything runs or is charged:
    a caller without a token that touches a field it may not use (401), and a mutation or a
    subscription whose selection asks for a field the caller may not use (nothing of it is
    written; no event is followed). Queries of callers with a token run, with each denied
    field refused by `DenyFields`."""

    def on_validate(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        context = execution.context
        document = execution.graphql_document
        denied: frozenset[Coordinate] = getattr(context, "denied", frozenset())
        if execution.pre_execution_errors or document is None or not denied:
            return
        operation = get_operation_ast(document, execution.operation_name)
        anonymous = context.principal.is_anonymous
        whole = operation is not None and operation.operation is not OperationType.QUERY
        if operation is None or not (anonymous or whole):
            return
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        refused = denied & touched_coordinates(execution.schema._schema, operation, fragments)
        if not refused:
            return
        context.denials.update(refused)
        if anonymous:
            raise Unauthenticated("This needs a bearer token.")
        names = [f"{type_name}.{field_name}" for type_name, field_name in sorted(refused)]
        raise Forbidden(
            f"You may not use {', '.join(f'`{name}`' for name in names)}; "
            f"the {operation.operation.value} was not run.",
            coordinates=names,
        )


_TOUCHED: IdentityMemo[frozenset[Coordinate]] = IdentityMemo(1024)


def touched_coordinates(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> frozenset[Coordinate]:
    """Every field coordinate an operation (with its fragments) may resolve; remembered per
    parsed operation, which the parser cache hands out again for the same text."""
    return _TOUCHED.get((operation,), lambda: _touched(schema, operation, fragments))


def _touched(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> frozenset[Coordinate]:
    type_info = TypeInfo(schema)
    found: set[Coordinate] = set()

    class Collect(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            parent = type_info.get_parent_type()
            if parent is not None:
                found.add((parent.name, node.name.value))

    for node in (operation, *fragments.values()):
        visit(node, TypeInfoVisitor(type_info, Collect()))
    return frozenset(found)
