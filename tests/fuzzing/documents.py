"""Documents drawn by Hypothesis around one root field: odd aliases and fragments, deep
nesting, and at most one hostile part (a value, a value's shape, the variables, the
document's shape), so that the rest is plain enough to reach what that part is meant for."""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import quote

import httpx
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    is_composite_type,
)
from hypothesis import strategies as st

from tests.fuzzing.values import HOSTILE_TEXT, Pools, one_in

MAX_FIELDS = 30
"""Fields per document, so that deep nesting does not grow every branch."""

ODD_ALIASES = ["a", "_", "x" * 300, "__a"]
CLASHING_ALIASES = ["__typename", "id"]
ODD_KEYS = ["nme", "__proto__", "id", "\ud800"]
PERSISTED = [("0" * 64, " #\ud800"), ("0" * 64, ""), ("\ud800", ""), ("z", " #\ud800")]
"""`persistedQuery` hashes, each with what follows the document: a comment holding a lone
surrogate or nothing."""
HOSTILITY = [None, "values", "values", "types", "variables", "shape"]
"""What is hostile in a document, if anything: drawn once per document."""

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


class EnumName(str):
    """A value printed bare in a literal (`DRAFT`), and as a string in variables."""


class Document:
    """One GraphQL request drawn from the schema around one root field: the operation, its
    variable definitions and values, its fragments.

    At most one kind of hostility per document, so that the rest of it is plain enough to
    reach the code the hostile part is meant for: one value that is hostile (which mostly
    passes GraphQL's coercion and reaches a resolver), one value of another shape, hostile
    variables, or a hostile shape of the document itself."""

    def __init__(self, draw: st.DrawFn, schema: GraphQLSchema, pools: Pools) -> None:
        self.draw = draw
        self.schema = schema
        self.pools = pools
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}
        self.fragments: list[str] = []
        self.fields_left = MAX_FIELDS
        self.kind: str | None = draw(st.sampled_from(HOSTILITY))
        self.target = draw(one_in(6))  # which chance of that kind is taken, in draw order
        self.chances = 0

    def choose(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options))

    def chance(self, n: int) -> bool:
        """True once in `n` draws; Hypothesis's simplest draw (0) is False, so that the
        examples it tries first are plain ones."""
        return self.draw(one_in(n)) == n - 1

    def hostile(self, kind: str) -> bool:
        """Whether this part is the one hostile part: the document's target-th chance of its
        kind of hostility."""
        if self.kind != kind:
            return False
        self.chances += 1
        return self.chances - 1 == self.target

    # Input values

    def value(self, type_: GraphQLInputType, hint: str, depth: int = 0) -> Any:
        """A value for `type_` named `hint`: of its shape, but for the document's target."""
        if isinstance(type_, GraphQLNonNull):
            return self.value(type_.of_type, hint, depth)
        if depth > 3 or self.hostile("types"):
            return self.draw(self.pools.anything)
        if isinstance(type_, GraphQLList):
            if self.chance(3):  # a single item where a list is expected: GraphQL coerces it
                return self.value(type_.of_type, hint, depth + 1)
            count = self.draw(one_in(4))
            return [self.value(type_.of_type, hint, depth + 1) for _ in range(count)]
        if isinstance(type_, GraphQLInputObjectType):
            fields = {
                name: self.value(inner.type, f"{hint}.{name}".lower(), depth + 1)
                for name, inner in type_.fields.items()
                if isinstance(inner.type, GraphQLNonNull) or not self.chance(3)
            }
            if self.hostile("types"):
                fields[self.choose(ODD_KEYS)] = 1
            return fields
        hostile = self.hostile("values")
        if isinstance(type_, GraphQLEnumType):
            names = list(type_.values)
            odd = [names[0].lower(), names[0][:-1], "null", "true"]
            return EnumName(self.choose(odd if hostile else names))
        pools = self.pools
        strategy = (pools.hostile_for if hostile else pools.fitting)(type_.name, hint)
        return self.draw(strategy)

    def argument(self, type_: GraphQLInputType, hint: str) -> str:
        """An argument's value as the document writes it: a literal or a variable."""
        value = self.value(type_, hint)
        if self.chance(2):
            return literal(value, raw=self.hostile("variables"))
        name = f"v{len(self.definitions)}"
        wrong = self.hostile("variables")
        declared = self.choose(["String", "Int!", "[ID]"]) if wrong else str(type_)
        self.definitions.append(f"${name}: {declared}")
        if not self.hostile("variables"):  # else defined but not given
            self.variables[name] = value
        return f"${name}"

    # Selections

    def selection_set(self, type_: GraphQLOutputType, depth: int) -> str:
        named = get_named_type(type_)
        if isinstance(named, GraphQLUnionType | GraphQLInterfaceType):
            possible = list(self.schema.get_possible_types(named))
            chosen = self.draw(st.lists(st.sampled_from(possible), max_size=2, unique=True))
            parts = ["__typename"] + [
                f"... on {member.name} {self.selection_set(member, depth + 1)}" for member in chosen
            ]
            return "{ " + " ".join(parts) + " }"
        assert isinstance(named, GraphQLObjectType)
        if self.fields_left <= 0:
            return "{ __typename }"
        names = self.draw(
            st.lists(st.sampled_from(sorted(named.fields)), min_size=1, max_size=3, unique=True)
        )
        parts = [self.field(name, named.fields[name], depth) for name in names]
        if self.chance(5):
            parts.append(self.fragment(named, depth))
        if self.chance(8):
            parts.append(f"... on {named.name} {{ __typename }}")
        return "{ " + " ".join(parts) + " }"

    def field(self, name: str, definition: GraphQLField, depth: int) -> str:
        self.fields_left -= 1
        text = name
        if self.chance(5):  # an alias of an odd form, numbered so that no two clash
            text = f"{self.choose(ODD_ALIASES)}{self.fields_left}: {name}"
        elif self.hostile("shape"):  # one that does clash, or poses as `__typename`
            text = f"{self.choose(CLASHING_ALIASES)}: {name}"
        arguments = [
            f"{arg_name}: {self.argument(argument.type, f'{name}.{arg_name}'.lower())}"
            for arg_name, argument in definition.args.items()
            if isinstance(argument.type, GraphQLNonNull) or not self.chance(3)
        ]
        if self.hostile("shape"):
            arguments.append("nope: 1")
        if arguments:
            text += "(" + ", ".join(arguments) + ")"
        if self.chance(12):
            text += self.choose([" @include(if: false)", " @skip(if: $skip)"])
        if self.hostile("shape"):
            text += self.choose([" @nope", " @skip", " @include(if: 1)"])
        composite = is_composite_type(get_named_type(definition.type))
        odd = self.hostile("shape")  # a selection on a leaf, or none on an object
        if composite and not odd:
            text += " " + self.selection_set(definition.type, depth + 1)
        elif not composite and odd:
            text += " { id }"
        return text

    def fragment(self, on: GraphQLObjectType, depth: int) -> str:
        number = len(self.fragments)
        self.fragments.append("")  # the name is taken while its body is drawn
        cycle = f" ...F{number}" if self.hostile("shape") else ""  # refused
        body = self.selection_set(on, depth + 1)
        self.fragments[number] = f"fragment F{number} on {on.name} {body[:-1]}{cycle} }}"
        return f"...F{number}"

    def operation(self, root_name: str) -> str:
        """An operation around the root field `root_name`, now and then with another."""
        mutation = self.schema.mutation_type
        assert mutation is not None and self.schema.query_type is not None
        root = mutation if root_name in mutation.fields else self.schema.query_type
        names = [root_name]
        if self.chance(5):
            names.append(self.choose(sorted(root.fields)))
        parts = [self.field(name, root.fields[name], 1) for name in names]
        selection = "{ " + " ".join(parts) + " }"
        if "$skip" in selection + " ".join(self.fragments):
            self.definitions.append("$skip: Boolean = true")
        keyword = "mutation" if root is mutation else "query"
        variables = f"({', '.join(self.definitions)})" if self.definitions else ""
        return " ".join([f"{keyword} Fuzz{variables} {selection}", *self.fragments])


def literal(value: Any, *, raw: bool = False) -> str:
    """`value` written as a GraphQL literal; `raw` leaves non-ASCII text unescaped."""
    if value is None:
        return "null"
    if isinstance(value, EnumName):
        return str(value) if _NAME.fullmatch(value) else json.dumps(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, float):  # GraphQL has no literal for NaN or infinity
        return json.dumps(repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=not raw)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item, raw=raw) for item in value) + "]"
    fields = [
        f"{key}: {literal(item, raw=raw)}" for key, item in value.items() if _NAME.fullmatch(key)
    ]
    return "{" + ", ".join(fields) + "}"


@st.composite
def requests(draw: st.DrawFn, schema: GraphQLSchema, pools: Pools, root: str) -> dict[str, Any]:
    """A request body around `root`: mostly a drawn document, sometimes broken in one of a
    few ways that concern the other request parameters."""
    document = Document(draw, schema, pools)
    query = document.operation(root)
    body: dict[str, Any] = {"query": query, "variables": document.variables}
    shape = 39 - draw(one_in(40))  # Hypothesis's simplest draw (0): no break
    if shape == 0:
        body["query"] = query[: draw(st.integers(1, len(query) - 1))]
    elif shape == 1:
        body["query"] = draw(st.text(max_size=40)) + draw(st.sampled_from(HOSTILE_TEXT[:10]))
    elif shape == 2:
        body["operationName"] = draw(st.sampled_from(["Fuzz", "Other", "\ud800", "", "x" * 1000]))
    elif shape == 3:
        body["query"] = query + " query Other { __typename }"
    elif shape == 4:
        body["extensions"] = draw(pools.anything)
    elif shape == 5:
        digest, comment = draw(st.sampled_from(PERSISTED))
        body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        body["query"] = query + comment
    elif shape == 6:
        body["variables"] = draw(pools.anything)
    return body


def encode(body: dict[str, Any], deep: int | None) -> str:
    """The body as JSON text (lone surrogates as `\\ud800` escapes), with a variable `deep`
    nested lists deep when asked: deeper than `json.dumps` itself may write."""
    variables = body.get("variables")
    if deep is None or not isinstance(variables, dict):
        return json.dumps(body)
    text = json.dumps({**body, "variables": {**variables, "deep": "[deep]"}})
    return text.replace('"[deep]"', "[" * deep + "]" * deep, 1)


async def send(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    deep: int | None,
    get: bool,
) -> httpx.Response:
    if get:
        # Percent-encoded UTF-8; a lone surrogate travels as bytes no decoder accepts.
        texts = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        params = [f"{k}={quote(v, safe='', errors='surrogatepass')}" for k, v in texts.items()]
        url = "/graphql?" + "&".join(params)
        if len(url) < 60_000:  # httpx refuses longer URLs, as servers do
            return await client.get(url, headers=headers)
    return await client.post("/graphql", content=encode(body, deep), headers=headers)


# Every argument site in turn: plain values everywhere but one hostile one.
