"""The planned executor answers exactly as graphql-core does: data, errors, audit, cost."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import coverage
import httpx
import pytest
from graphql import OperationType, parse
from graphql.language import OperationDefinitionNode
from starlette.applications import Starlette

from hub.budget import BucketResult
from hub.observability.metrics import Metrics
from hub.settings import Settings
from tests.conftest import SENT, SentQuery, running_app

INTROSPECTION = ("__schema", "__type")
CHANGING = ("personalDataAccessLog", "exportContactData", "erasureReport")
"""Fields that read what every read changes (the access log grows with each): two runs of
them cannot agree, whichever executor runs them."""


@dataclass(frozen=True)
class Outcome:
    status: int
    data: str
    errors: list[str]
    audit: Counter[tuple[Any, ...]]
    cost: tuple[Any, Any]


class Unlimited:
    """A bucket that never runs dry: the replay charges thousands of requests to a few clients."""

    async def take(self, *_args: Any, **_kwargs: Any) -> BucketResult:
        return BucketResult(True, 10**9, 0)

    async def refund(self, *_args: Any, **_kwargs: Any) -> int:
        return 10**9

    async def aclose(self) -> None:
        return None


async def answer(app: Starlette, client: httpx.AsyncClient, sent: SentQuery) -> Outcome:
    hub = app.state.hub
    recorded: list[tuple[Any, ...]] = []
    record = hub.audit.record

    def spy(*events: Any) -> bool:
        recorded.extend((e.coordinate, e.decision, e.subject, e.reason) for e in events)
        return bool(record(*events))

    hub.audit.record = spy
    headers = {"Accept": "application/graphql-response+json"}
    if sent.authorization:
        headers["Authorization"] = sent.authorization
    body: dict[str, Any] = {"query": sent.query, "variables": sent.variables}
    if sent.operation_name:
        body["operationName"] = sent.operation_name
    try:
        response = await client.post("/graphql", json=body, headers=headers)
    finally:
        hub.audit.record = record
    payload = response.json()
    cost = payload.get("extensions", {}).get("cost", {})
    return Outcome(
        response.status_code,
        json.dumps(payload.get("data", "absent")),
        sorted(json.dumps(error, sort_keys=True) for error in payload.get("errors", [])),
        Counter(recorded),
        (cost.get("requestedQueryCost"), cost.get("actualQueryCost")),
    )


async def both_ways(
    app: Starlette, client: httpx.AsyncClient, sent: SentQuery
) -> tuple[Outcome, Outcome, float]:
    """The outcome on the planned executor, on graphql-core's, and the fallbacks counted."""
    hub = app.state.hub
    engine = hub.query_engine

    def fallbacks() -> float:
        metrics: Metrics = hub.metrics
        return sum(
            metrics.value("hub_engine_fallbacks_total", reason=reason)
            for reason in ("defer", "unknown_field", "type")
        )

    before = fallbacks()
    planned = await answer(app, client, sent)
    after = fallbacks()
    hub.query_engine = None
    try:
        reference = await answer(app, client, sent)
    finally:
        hub.query_engine = engine
    return planned, reference, after - before


def is_plain_query(text: str) -> bool:
    """A query (not a mutation) that reads no introspection: the planned executor's to run."""
    try:
        document = parse(text)
    except Exception:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return all(o.operation is OperationType.QUERY for o in operations) and not any(
        name in text for name in (*INTROSPECTION, *CHANGING)
    )


DOWN = "http://127.0.0.1:9"
"""A source that refuses every connection."""


@pytest.fixture
def untraced() -> Iterator[None]:
    """The replay is not traced for coverage: it runs the lines the tests that sent its
    queries ran, and tracing them again took half of its time."""
    current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


@pytest.mark.parametrize("sources", ["up", "down"])
@pytest.mark.usefixtures("untraced")
async def test_every_query_the_suite_sends_answers_the_same_on_both_executors(
    sqlite_settings: Settings, sources: str
) -> None:
    sent = [s for s in SENT.values() if is_plain_query(s.query)]
    if not sent:
        pytest.skip("run with the whole suite: this replays the queries the other tests sent")
    settings = sqlite_settings
    if sources == "down":
        down = {f"{name}_url": DOWN for name in ("crm", "social", "discovery")}
        # No retries, and no circuit that opens between the two runs of a query.
        settings = settings.model_copy(
            update={**down, "source_retries": 0, "source_breaker_failures": 10**9}
        )
    differences: list[str] = []
    async with running_app(settings) as (app, client):
        app.state.hub.bucket = Unlimited()
        for query in sent:
            planned, reference, fallbacks = await both_ways(app, client, query)
            if planned != reference or fallbacks:
                differences.append(f"{query.query[:200]!r}:\n  {planned}\n  {reference}"[:2000])
    assert differences == [], f"{len(differences)} of {len(sent)} differ:\n" + "\n".join(
        differences[:5]
    )
