"""What runs on graphql-core instead of the planned executor is counted, and plans are kept
only with their own document."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import httpx
import strawberry
from graphql import parse
from strawberry.extensions import FieldExtension

from hub.engine.fallback import QueryEngine
from hub.engine.plan import Kind, Planner
from hub.observability.metrics import Metrics
from hub.schema.schema import HubSchema
from tests.conftest import MakeToken


def fallbacks(text: str, reason: str) -> float:
    found = re.search(rf'^hub_engine_fallbacks_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_mutation_is_counted_as_run_on_graphql_core(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    before = fallbacks((await sqlite_client.get("/metrics")).text, "mutation")
    response = await sqlite_client.post(
        "/graphql",
        json={"query": 'mutation { createCampaign(input: {name: "M", brand: "b"}) { id } }'},
        headers={"Authorization": f"Bearer {make_token()}"},
    )
    assert response.json()["data"]["createCampaign"]["id"].startswith("cmp_")
    after = fallbacks((await sqlite_client.get("/metrics")).text, "mutation")
    assert after - before == 1


class Upper(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()


@strawberry.type
class Query:
    @strawberry.field(extensions=[Upper()])  # type: ignore[untyped-decorator]
    def shout(self) -> str:
        return "quiet"

    @strawberry.field
    def plain(self) -> str:
        return "plain"


SCHEMA = HubSchema(query=Query)


def planner(query: str, batches: dict[str, Any]) -> Planner:
    document = parse(query)
    operation = document.definitions[0]
    return Planner(
        schema=SCHEMA._schema,
        fragments={},
        variables=SimpleNamespace(coerced={}),  # type: ignore[arg-type]
        operation=operation,  # type: ignore[arg-type]
        denied=frozenset(),
        batches=batches,
    )


def test_a_field_with_extensions_keeps_its_own_resolver_though_a_batch_exists() -> None:
    batches = {"Query.shout": object(), "Query.plain": object()}
    steps = planner("{ shout plain }", batches).plan().root.steps
    assert [step.kind for step in steps] == [Kind.RESOLVE, Kind.BATCH]


def test_a_plan_is_kept_only_with_the_document_its_operation_belongs_to() -> None:
    kept: list[Any] = []
    other = parse("{ plain }")

    def keep(key: Any, make: Any) -> Any:
        kept.append(key)
        return make()

    document = SimpleNamespace(node=other, kept=keep, directive_variables=())
    operation = parse("{ shout }").definitions[0]
    executor = SimpleNamespace(
        context_value=SimpleNamespace(document=document, denied=frozenset()),
        operation=operation,
        schema=SCHEMA._schema,
        fragments={},
        variable_values=SimpleNamespace(coerced={}),
        hide_suggestions=False,
    )
    engine = QueryEngine(batches={}, metrics=Metrics())
    assert engine.plan(executor) is not None
    assert kept == []
    executor.operation = other.definitions[0]
    assert engine.plan(executor) is not None
    assert len(kept) == 1
