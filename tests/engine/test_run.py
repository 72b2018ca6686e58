"""The planned executor completes values as graphql-core does: nulls, lists, errors, types."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
import strawberry

from hub.engine.fallback import QueryEngine
from hub.observability.metrics import Metrics
from hub.schema.schema import HubSchema


@strawberry.type
class Money:
    amount: str
    currency: str | None


@strawberry.type
class Item:
    name: str
    tags: list[str]
    loose_tags: list[str | None] | None
    strict_tags: list[str] | None
    price: Money | None
    count: int | None
    unset: str | None = None

    @strawberry.field
    async def failing(self) -> str | None:
        raise ValueError("boom")

    @strawberry.field
    async def required(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    def required_now(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    async def children(self, first: int = 2) -> list[Item]:
        return ITEMS[:first]

    @strawberry.field
    async def maybe_children(self) -> list[Item | None] | None:
        return [ITEMS[0], None, ITEMS[1]]


@strawberry.type
class Other:
    label: str


Thing = Annotated[Item | Other, strawberry.union("Thing")]

BAD_COUNT: Any = "many"
ITEMS = [
    Item(
        name="a",
        tags=["x", "y"],
        loose_tags=["p", None],
        strict_tags=["q"],
        price=Money(amount="1.50", currency="EUR"),
        count=1,
    ),
    Item(
        name="b",
        tags=[],
        loose_tags=None,
        strict_tags=["r", None],  # type: ignore[list-item]
        price=None,
        count=BAD_COUNT,
    ),
]


@strawberry.type
class Query:
    @strawberry.field
    async def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    async def maybe_items(self) -> list[Item] | None:
        return ITEMS

    @strawberry.field
    def first(self) -> Item:
        return ITEMS[0]

    @strawberry.field
    async def things(self) -> list[Thing]:
        return [ITEMS[0], Other(label="o")]

    @strawberry.field
    async def not_a_list(self) -> list[str] | None:
        return 3  # type: ignore[return-value]

    @strawberry.field
    async def refused(self, ok: bool = False) -> str:
        if not ok:
            raise ValueError("refused")
        return "fine"

    @strawberry.field
    async def maybe(self, ok: bool = False) -> str | None:
        if not ok:
            raise ValueError("maybe not")
        return "fine"


SCHEMA = HubSchema(query=Query)

QUERIES = [
    "{ items { name tags price { amount currency } } }",
    "{ items { n: name t: tags ...F } } fragment F on Item { price { amount } count }",
    "{ items { loose: looseTags strict: strictTags } }",
    "{ maybeItems { name count } }",
    "{ items { name failing } }",
    "{ maybeItems { name required } }",
    "{ maybeItems { name requiredNow } }",
    "{ first { name children(first: 1) { name children { name } } } }",
    "{ first { maybeChildren { name count } } }",
    "{ things { __typename ... on Item { name } ... on Other { label } } }",
    "{ notAList }",
    "{ refused maybe }",
    "{ maybe refused }",
    "{ a: maybe b: maybe(ok: true) c: refused(ok: true) }",
    "{ first { __typename name unset } __typename }",
    "query ($s: Boolean!) { items { name @skip(if: $s) tags @include(if: $s) } }",
]


async def run(query: str, *, planned: bool, variables: dict[str, Any] | None = None) -> str:
    context = SimpleNamespace(
        query_engine=QueryEngine(batches={}, metrics=Metrics()) if planned else None,
        denied=frozenset(),
        denials=set(),
        granted=frozenset({"schema:introspect"}),
        principal=SimpleNamespace(is_anonymous=False),
        resolved=None,
        audit=None,
    )
    result = await SCHEMA.execute(query, variable_values=variables, context_value=context)
    # The planned executor notes what it resolved; graphql-core's does not.
    assert (context.resolved is not None) is planned
    errors = sorted(json.dumps(error.formatted, sort_keys=True) for error in result.errors or ())
    return json.dumps({"data": result.data, "errors": errors})


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("variables", [{"s": True}, {"s": False}])
async def test_values_nulls_and_errors_are_completed_as_graphql_core_does(
    query: str, variables: dict[str, Any]
) -> None:
    used = variables if "$s" in query else None
    assert await run(query, planned=True, variables=used) == await run(
        query, planned=False, variables=used
    )


async def test_a_non_null_field_that_fails_nulls_its_object_and_reports_once() -> None:
    answer = json.loads(await run("{ maybeItems { name required } }", planned=True))
    assert answer["data"] == {"maybeItems": None}
    assert [json.loads(e)["path"] for e in answer["errors"]] == [["maybeItems", 0, "required"]]
