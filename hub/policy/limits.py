"""Operation limits: depth, aliases, root fields, directives, fragment spreads and tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSyntaxError,
    InlineFragmentNode,
    Lexer,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
)

from hub.errors import QueryTooComplex

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class Limits:
    """The most an operation may ask for; `max_introspection_depth` applies under
    `__schema`/`__type`, whose standard query is deeper than any data query needs."""

    max_depth: int = 10
    max_introspection_depth: int = 15
    max_aliases: int = 15
    max_root_fields: int = 10
    max_tokens: int = 1000
    max_directives: int = 50
    max_fragment_spreads: int = 100
    max_selection_width: int = 100

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))


@dataclass(frozen=True, slots=True)
class Shape:
    """What an operation selects, with every fragment counted once per use."""

    depth: int = 0
    introspection_depth: int = 0
    root_fields: int = 0
    aliases: int = 0
    directives: int = 0
    fragment_spreads: int = 0
    width: int = 0
    """The most fields one selection set holds, its fragments' included (validation compares
    every two fields of a set: its work grows with the square of this)."""


_EMPTY = Shape()


def count_tokens(query: str, *, limit: int) -> int:
    """Lexical tokens of `query`, comments included, counting no further than `limit + 1`.

    A document that does not lex returns the count so far: the parser reports the error.
    """
    lexer = Lexer(Source(query))
    token = lexer.token
    count = 0
    try:
        while count <= limit:
            # read_next_token rather than advance(): comments count, and no token list grows.
            token = lexer.read_next_token(token.end)
            if token.kind == TokenKind.EOF:
                break
            count += 1
    except GraphQLSyntaxError:
        pass
    return count


def check_tokens(query: str, limits: Limits) -> None:
    """QUERY_TOO_COMPLEX when `query` has more than `max_tokens` tokens; stops reading there."""
    check_token_count(count_tokens(query, limit=limits.max_tokens), limits.max_tokens)


def check_token_count(count: int, max_tokens: int) -> None:
    """QUERY_TOO_COMPLEX when `count` tokens are more than `max_tokens`."""
    if count > max_tokens:
        raise QueryTooComplex(
            f"The query has more than {max_tokens} tokens.", limit=max_tokens, actual=count
        )


def measure(document: DocumentNode, *, operation_name: str | None) -> Shape:
    """The shape of the named operation (of every operation when the name selects none).

    A fragment that spreads itself, directly or not, is QUERY_TOO_COMPLEX: it has no size.
    """
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments.setdefault(definition.name.value, definition)
    shapes: dict[str, Shape] = {}
    for name in _ordered(fragments):
        shapes[name] = _measure(fragments[name].selection_set, shapes)
    result = Shape()
    for operation in _operations(document, operation_name):
        shape = _measure(operation.selection_set, shapes)
        result = _widest(result, shape, directives=len(operation.directives or ()))
    return result


def check_limits(document: DocumentNode, limits: Limits, *, operation_name: str | None) -> None:
    """QUERY_TOO_COMPLEX, with `limit` and `actual`, for the first limit the operation exceeds.

    Runs before validation, on any parsed document, in time linear in the document.
    """
    check_shape(measure(document, operation_name=operation_name), limits)


def check_shape(shape: Shape, limits: Limits) -> None:
    """`check_limits` for a shape measured before (it depends on the document only)."""
    checks = (
        ("The query has {} root fields", shape.root_fields, limits.max_root_fields),
        ("The query has {} aliases", shape.aliases, limits.max_aliases),
        ("The query has {} directives", shape.directives, limits.max_directives),
        ("The query has {} fragment spreads", shape.fragment_spreads, limits.max_fragment_spreads),
        ("A selection of the query has {} fields", shape.width, limits.max_selection_width),
        ("The query is {} levels deep", shape.depth, limits.max_depth),
        (
            "The introspection is {} levels deep",
            shape.introspection_depth,
            limits.max_introspection_depth,
        ),
    )
    for what, actual, limit in checks:
        if actual > limit:
            message = f"{what.format(actual)}; the limit is {limit}."
            raise QueryTooComplex(message, limit=limit, actual=actual)


def _operations(
    document: DocumentNode, operation_name: str | None
) -> list[OperationDefinitionNode]:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    named = [o for o in operations if o.name is not None and o.name.value == operation_name]
    return named or operations


def _ordered(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str]:
    """Fragment names, each after the fragments it spreads; a cycle is refused.

    Iterative, so that a long chain of fragments cannot exhaust the interpreter's stack.
    """
    done: set[str] = set()
    order: list[str] = []
    for root in fragments:
        if root in done:
            continue
        path = [root]
        stack = [iter(sorted(_spreads(fragments[root].selection_set)))]
        while stack:
            name = next(stack[-1], None)
            if name is None:
                stack.pop()
                finished = path.pop()
                done.add(finished)
                order.append(finished)
            elif name in path:
                cycle = " → ".join([*path[path.index(name) :], name])
                raise QueryTooComplex(
                    f"Fragments may not spread themselves: {cycle}.", limit=0, actual=1
                )
            elif name not in done and name in fragments:
                path.append(name)
                stack.append(iter(sorted(_spreads(fragments[name].selection_set))))
    return order


def _spreads(selection_set: SelectionSetNode) -> set[str]:
    names: set[str] = set()
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.add(selection.name.value)
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append(selection.selection_set)
    return names


def _measure(selection_set: SelectionSetNode | None, fragments: Mapping[str, Shape]) -> Shape:
    """Depths from this level down; root fields are the fields at this level."""
    depth = introspection = root = aliases = directives = spreads = width = 0
    if selection_set is None:
        return Shape()
    for selection in selection_set.selections:
        directives += len(selection.directives or ())
        if isinstance(selection, FieldNode):
            root += 1
            if selection.alias is not None:
                aliases += 1
            if selection.selection_set is None:
                depth = max(depth, 1)
                continue
            inner = _measure(selection.selection_set, fragments)
            width = max(width, inner.width)
            if selection.name.value in INTROSPECTION_ROOTS:
                deepest = max(inner.depth, inner.introspection_depth)
                introspection = max(introspection, 1 + deepest)
            else:
                depth = max(depth, 1 + inner.depth)
                if inner.introspection_depth:
                    introspection = max(introspection, 1 + inner.introspection_depth)
        elif isinstance(selection, InlineFragmentNode):
            inner = _measure(selection.selection_set, fragments)
            depth = max(depth, inner.depth)
            introspection = max(introspection, inner.introspection_depth)
            root += inner.root_fields
            width = max(width, inner.width)
        elif isinstance(selection, FragmentSpreadNode):
            # An unknown fragment is left to validation; the spread itself still counts.
            spreads += 1
            inner = fragments.get(selection.name.value, _EMPTY)
            depth = max(depth, inner.depth)
            introspection = max(introspection, inner.introspection_depth)
            root += inner.root_fields
            width = max(width, inner.width)
            aliases += inner.aliases
            directives += inner.directives
            spreads += inner.fragment_spreads
            continue
        aliases += inner.aliases
        directives += inner.directives
        spreads += inner.fragment_spreads
    return Shape(depth, introspection, root, aliases, directives, spreads, max(width, root))


def _widest(a: Shape, b: Shape, *, directives: int) -> Shape:
    """Two operations that might run: the larger of each measure."""
    return Shape(
        max(a.depth, b.depth),
        max(a.introspection_depth, b.introspection_depth),
        max(a.root_fields, b.root_fields),
        max(a.aliases, b.aliases),
        max(a.directives, b.directives + directives),
        max(a.fragment_spreads, b.fragment_spreads),
        max(a.width, b.width),
    )
