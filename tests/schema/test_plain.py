"""Plain objects completed in one pass give exactly graphql-core's answers, errors included."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub.schema import executor as executor_module
from hub.schema import plain as plain_module
from hub.schema.executor import HubExecutor
from tests.conftest import MakeToken
from tests.helpers import gql


@strawberry.type
class Money:
    amount: str
    currency: str | None


@strawberry.type
class Point:
    day: str
    count: int
    tags: list[str]
    spend: Money | None
    extra: Money | None = None


@strawberry.type
class Query:
    @strawberry.field
    def points(self, broken: bool = False, wrong: bool = False) -> list[Point]:
        money = Money(amount="1.50", currency=None)
        # `wrong`: an object without Money's attributes where a Money belongs.
        extra = object() if wrong else money
        points = [Point(day="a", count=1, tags=["x"], spend=money, extra=extra)]  # type: ignore[arg-type]
        points.append(Point(day="b", count=None if broken else 2, tags=[], spend=None))  # type: ignore[arg-type]
        return points


@pytest.mark.parametrize(
    "query",
    [
        "{ points { day count tags spend { amount currency } } }",
        "{ points { __typename d: day ...F spend { ... on Money { amount } } } }"
        " fragment F on Point { count @include(if: true) tags @skip(if: true) }",
        "{ points(broken: true) { day count } }",  # a null in a non-null field
        "{ points(wrong: true) { day extra { amount } spend { amount } } }",  # a broken object
    ],
)
async def test_answers_match_graphql_cores_own(query: str) -> None:
    answers = []
    for executor in (HubExecutor, StrawberryGraphQLCoreExecutionContext):
        schema = strawberry.Schema(Query, execution_context_class=executor)
        result = await schema.execute(query)
        errors = [(e.message, e.path) for e in result.errors or []]
        answers.append((result.data, errors))
    assert answers[0] == answers[1]
    if "broken" in query:
        assert answers[0][1] == [
            ("Cannot return null for non-nullable field Point.count.", ["points", 1, "count"])
        ]
    if "wrong" in query:  # the error at the leaf, its siblings answered
        assert [path for _, path in answers[0][1]] == [["points", 0, "extra", "amount"]]
        assert answers[0][0] == {
            "points": [
                {"day": "a", "extra": None, "spend": {"amount": "1.50"}},
                {"day": "b", "extra": None, "spend": None},
            ]
        }


DASHBOARD = """
query ($id: ID!) {
  campaign(id: $id) {
    __typename name budget { amount currency }
    metrics(from: "2026-03-01", to: "2026-03-14") {
      date granularity impressions engagements engagementRate
      spend { amount currency } cpm { amount }
    }
    totals(from: "2026-03-01", to: "2026-03-14") { impressions cpc { amount } }
    members(first: 5) { edges { node { status fee { amount } influencer {
      handle categories
      accounts { platform username followers }
      audience { countries { code share } interests genderSplit { female male other } }
      metrics(from: "2026-03-01", to: "2026-03-14", granularity: WEEK) { date impressions }
      contacts { role company email }
    } } } }
  }
}
"""


async def test_the_dashboard_is_the_same_with_and_without_plain_objects(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make_token()
    _, listing = await gql(
        sqlite_client, "{ campaigns(first: 1) { edges { node { id } } } }", token=token
    )
    variables = {"id": listing["data"]["campaigns"]["edges"][0]["node"]["id"]}
    answers: list[Any] = []
    completed: list[Any] = []

    def counted(plan: Any, source: Any) -> Any:
        completed.append(source)
        return plain_module.complete(plan, source)

    monkeypatch.setattr(executor_module, "complete", counted)
    for plain in (True, False):
        if not plain:
            monkeypatch.setattr(HubExecutor, "_plan", lambda *_args: None)
        _, payload = await gql(sqlite_client, DASHBOARD, token=token, variables=variables)
        payload.pop("extensions")
        answers.append(payload)
    assert answers[0] == answers[1]
    campaign = answers[0]["data"]["campaign"]
    influencers = [edge["node"]["influencer"] for edge in campaign["members"]["edges"]]
    points = len(campaign["metrics"]) + sum(len(i["metrics"]) for i in influencers)
    assert points > 14  # 14 days, and weeks per influencer
    # Every metric point went the plain way (their money within them).
    assert sum(type(source).__name__ == "MetricPoint" for source in completed) == points
