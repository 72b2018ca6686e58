"""Field authorization: the access policy's denied fields, refused by the executor itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLSchema, is_object_type
from graphql.execution import MiddlewareManager
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub.errors import Forbidden, Unauthenticated
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
            self.context.denials.add(coordinate)
            name = f"{coordinate[0]}.{coordinate[1]}"
            if self.context.principal.is_anonymous:
                raise Unauthenticated("This needs a bearer token.")
            raise Forbidden(f"You may not use `{name}`.", coordinate=name)
        return next_(root, info, **args)


class GuardedExecutor(StrawberryGraphQLCoreExecutionContext):
    """Adds `DenyFields` only to requests that have denied fields, so others pay nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        denied: frozenset[Coordinate] = getattr(self.context_value, "denied", frozenset())
        if denied:
            existing = self.middleware_manager.middlewares if self.middleware_manager else ()
            self.middleware_manager = MiddlewareManager(
                *existing, DenyFields(denied, self.context_value)
            )
