"""Every argument site of the schema in turn: plain values everywhere but one position,
which gets each hostile value that suits it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_composite_type,
)

from tests.fuzzing.documents import literal
from tests.fuzzing.values import (
    HOSTILE_CURSORS,
    HOSTILE_DATES,
    HOSTILE_DECIMALS,
    HOSTILE_IDS,
    HOSTILE_NUMBERS,
    HOSTILE_TEXT,
    Pools,
    kind_in,
)

HOSTILE_SHAPES: list[Any] = [None, [], {}, "x", [[[]]], {"a": {"b": []}}]
"""Values of the wrong shape, tried at every position, containers included."""

HOSTILE_SCALARS: dict[str, list[Any]] = {
    "ID": [*HOSTILE_IDS, "\ud800", "a\x00"],
    "String": HOSTILE_TEXT,
    "Int": HOSTILE_NUMBERS,
    "Float": HOSTILE_NUMBERS,
    "Boolean": [1, "true"],
    "Decimal": HOSTILE_DECIMALS,
    "Date": HOSTILE_DATES,
    "DateTime": HOSTILE_DATES,
    "_Any": [
        {"__typename": "Contact", "id": "\ud800"},
        {"__typename": "Nope", "id": 1},
        {"__typename": "Contact", "id": "con_0000000000000000", "x": [[]]},
    ],
}


@dataclass(frozen=True)
class Site:
    """Fields with arguments, reached from a root field through plain arguments: `path`
    holds the fields from the root down, the last of which is the one fuzzed."""

    operation: str
    path: tuple[tuple[str, GraphQLField], ...]

    @property
    def coordinate(self) -> str:
        return ".".join(name for name, _ in self.path)


def sites(schema: GraphQLSchema) -> list[Site]:
    """Every root field and mutation, and every field with arguments up to three fields
    below a root query field (through `edges`, `node` and other fields without any)."""
    assert schema.query_type is not None and schema.mutation_type is not None
    found = [
        Site("mutation", ((name, field),)) for name, field in schema.mutation_type.fields.items()
    ]
    seen: set[str] = set()
    for name, field in schema.query_type.fields.items():
        found.append(Site("query", ((name, field),)))
        pending: list[tuple[tuple[str, GraphQLField], ...]] = [((name, field),)]
        while pending:
            path = pending.pop(0)
            owner = get_named_type(path[-1][1].type)
            if len(path) > 3 or not isinstance(owner, GraphQLObjectType):
                continue
            for inner_name, inner in owner.fields.items():
                if inner.args and f"{owner.name}.{inner_name}" not in seen:
                    seen.add(f"{owner.name}.{inner_name}")
                    found.append(Site("query", (*path, (inner_name, inner))))
                elif not inner.args:
                    pending.append((*path, (inner_name, inner)))
    return found


PLAIN_BY_NAME = {
    "purpose": "campaign_management",
    "currency": "EUR",
    "country": "PL",
    "platform": "instagram",
    "email": "a@b.test",
    "phone": "+48 600 000 000",
    "handleprefix": "a",
    "category": "fitness",
    "crmid": "crm-1",
}
"""Plain strings by the name of their argument or input field, so that the value reaches
the code behind the check of its format."""


def plain(pools: Pools, type_: GraphQLInputType, hint: str) -> Any:
    """A plain value of `type_` named `hint`; an input object with every field."""
    if isinstance(type_, GraphQLNonNull):
        return plain(pools, type_.of_type, hint)
    if isinstance(type_, GraphQLList):
        return [plain(pools, type_.of_type, hint)]
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: plain(pools, field.type, f"{hint}.{name}".lower())
            for name, field in type_.fields.items()
        }
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    last = hint.rsplit(".", 1)[-1]
    values: dict[str, Any] = {
        "ID": pools.real[kind_in(last) or kind_in(hint) or "influencer"][0],
        "String": PLAIN_BY_NAME.get(last, "Spring launch"),
        "Int": 5,
        "Float": 0.5,
        "Boolean": True,
        "Decimal": "12.34",
        "Date": "2026-03-31" if last in ("to", "endson") else "2026-01-01",
        "DateTime": "2026-01-01T00:00:00Z",
        "_Any": {"__typename": "Influencer", "id": pools.real["influencer"][0]},
    }
    return values.get(type_.name, "Spring launch")


Position = tuple[tuple[str | int, ...], GraphQLInputType, str]


def positions(
    type_: GraphQLInputType, path: tuple[str | int, ...], hint: str
) -> Iterator[Position]:
    """Every place a value goes inside an argument of `type_`: the argument itself, each
    item and input field, down to the scalars."""
    yield path, type_, hint
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList):
        yield from positions(inner.of_type, (*path, 0), hint)
    elif isinstance(inner, GraphQLInputObjectType):
        for name, field in inner.fields.items():
            yield from positions(field.type, (*path, name), f"{hint}.{name}".lower())


def hostile_values(type_: GraphQLInputType, hint: str) -> list[Any]:
    """What is tried at a position: wrong shapes anywhere, hostile values at a scalar."""
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList | GraphQLInputObjectType):
        return HOSTILE_SHAPES
    if isinstance(inner, GraphQLEnumType):
        first = next(iter(inner.values))
        return [*HOSTILE_SHAPES, first.lower(), first[:-1], "\ud800", 1]
    cursors = HOSTILE_CURSORS if hint.endswith("after") else []
    return [*HOSTILE_SHAPES, *cursors, *HOSTILE_SCALARS.get(inner.name, [])]


def placed(
    pools: Pools, field: GraphQLField, field_name: str, where: Position, value: Any
) -> dict[str, Any]:
    """The arguments of `field`: plain required ones, and `value` at `where`."""
    path, _type, _hint = where
    arguments = {
        name: plain(pools, argument.type, f"{field_name}.{name}".lower())
        for name, argument in field.args.items()
        if isinstance(argument.type, GraphQLNonNull) or name == path[0]
    }
    container: Any = arguments
    type_: Any = field.args[str(path[0])].type  # the type of `container[key]`
    for depth, key in enumerate(path[:-1]):
        current = container.get(key) if isinstance(container, dict) else container[key]
        if not isinstance(current, dict | list):
            hint = ".".join([field_name, *(str(k) for k in path[: depth + 1])]).lower()
            current = container[key] = plain(pools, type_, hint)
        container = current
        type_ = _inner(type_, path[depth + 1])
    container[path[-1]] = value
    return arguments


def _inner(type_: Any, key: str | int) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_.fields[key].type if isinstance(key, str) else type_


def site_document(pools: Pools, site: Site, arguments: dict[str, Any]) -> str:
    """The operation that reaches `site`, its arguments as variables `$a_<name>`."""
    (*above, (name, field)) = site.path
    declared = [f"$a_{arg}: {field.args[arg].type}" for arg in arguments]
    given = ", ".join(f"{arg}: $a_{arg}" for arg in arguments)
    text = f"{name}({given})" if given else name
    if is_composite_type(get_named_type(field.type)):
        text += " { __typename }"
    for outer_name, outer in reversed(above):
        required = [
            f"{arg}: {literal(plain(pools, argument.type, f'{outer_name}.{arg}'.lower()))}"
            for arg, argument in outer.args.items()
            if isinstance(argument.type, GraphQLNonNull)
        ]
        head = f"{outer_name}({', '.join(required)})" if required else outer_name
        text = f"{head} {{ {text} }}"
    variables = f"({', '.join(declared)})" if declared else ""
    return f"{site.operation} Sweep{variables} {{ {text} }}"


def sweep(schema: GraphQLSchema, pools: Pools) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what was placed where, the request body) for each site, each position inside its
    arguments and each hostile value for that position."""
    for site in sites(schema):
        name, field = site.path[-1]
        for argument, definition in field.args.items():
            hint = f"{name}.{argument}".lower()
            for where in positions(definition.type, (argument,), hint):
                for value in hostile_values(where[1], where[2]):
                    arguments = placed(pools, field, name, where, value)
                    body = {
                        "query": site_document(pools, site, arguments),
                        "variables": {f"a_{arg}": given for arg, given in arguments.items()},
                    }
                    yield f"{site.coordinate} {where[0]}={value!r:.60}", body
