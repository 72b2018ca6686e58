"""A bare strawberry server serving the hub's answers from memory: the peer of
`bench/throughput.py`.

Its own small schema with the hub's field names (the list query's and the campaign
dashboard's), plain synchronous resolvers, strawberry's parser and validation caches, one
uvicorn worker. The objects are built once at start-up from a JSON file of the hub's own
answers (`{"list": data, "dashboard": data}`), so that both servers answer with the same
objects, values and bytes. No authorization, cost, consent or store: what strawberry and
graphql-core alone cost for the same answer.

    python bench/bare_strawberry.py --port 8100 --data answers.json
"""

from __future__ import annotations

import argparse
import datetime
import enum
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

From = Annotated[datetime.date, strawberry.argument(name="from")]
OptionalFrom = Annotated[datetime.date | None, strawberry.argument(name="from")]


@strawberry.enum
class Granularity(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@strawberry.enum
class MemberStatus(enum.Enum):
    INVITED = "INVITED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"


@strawberry.type
class Money:
    amount: Decimal
    currency: str = ""


@strawberry.type
class MetricPoint:
    date: datetime.date
    impressions: int = 0
    engagements: int = 0
    engagement_rate: float | None = None
    spend: Money | None = None
    cpm: Money | None = None


@strawberry.type
class MetricTotals:
    impressions: int = 0
    engagement_rate: float | None = None
    cpc: Money | None = None


@strawberry.type
class CountryShare:
    code: str
    share: float


@strawberry.type
class Audience:
    countries: list[CountryShare]


@strawberry.type
class SocialAccount:
    platform: str
    username: str
    followers: int | None = None


@strawberry.type
class Contact:
    role: str | None = None
    company: str | None = None


@strawberry.type
class Influencer:
    id: strawberry.ID = strawberry.ID("")
    handle: str = ""
    display_name: str | None = None
    country: str | None = None
    categories: list[str] = strawberry.field(default_factory=list)
    accounts: list[SocialAccount] = strawberry.field(default_factory=list)
    audience: Audience | None = None
    contacts: list[Contact] = strawberry.field(default_factory=list)
    points: strawberry.Private[list[MetricPoint] | None] = None

    @strawberry.field
    def metrics(
        self, from_: From, to: datetime.date, granularity: Granularity = Granularity.DAY
    ) -> list[MetricPoint] | None:
        return self.points


@strawberry.type
class InfluencerEdge:
    node: Influencer


@strawberry.type
class InfluencerConnection:
    edges: list[InfluencerEdge]


@strawberry.type
class CampaignMember:
    status: MemberStatus
    fee: Money | None = None
    influencer: Influencer | None = None


@strawberry.type
class CampaignMemberEdge:
    node: CampaignMember


@strawberry.type
class CampaignMemberConnection:
    total_count: int
    edges: list[CampaignMemberEdge]


@strawberry.type
class Campaign:
    id: strawberry.ID
    name: str = ""
    budget: Money | None = None
    points: strawberry.Private[list[MetricPoint] | None] = None
    sums: strawberry.Private[MetricTotals | None] = None
    connection: strawberry.Private[CampaignMemberConnection | None] = None

    @strawberry.field
    def metrics(
        self, from_: From, to: datetime.date, granularity: Granularity = Granularity.DAY
    ) -> list[MetricPoint] | None:
        return self.points

    @strawberry.field
    def totals(
        self, from_: OptionalFrom = None, to: datetime.date | None = None
    ) -> MetricTotals | None:
        return self.sums

    @strawberry.field
    def members(self, first: int = 50, after: str | None = None) -> CampaignMemberConnection:
        connection = self.connection or CampaignMemberConnection(total_count=0, edges=[])
        return CampaignMemberConnection(
            total_count=connection.total_count, edges=connection.edges[:first]
        )


@strawberry.type
class Query:
    listed: strawberry.Private[list[InfluencerEdge]]
    campaigns: strawberry.Private[dict[str, Campaign]]

    @strawberry.field
    def influencers(self, first: int = 20, after: str | None = None) -> InfluencerConnection:
        return InfluencerConnection(edges=self.listed[:first])

    @strawberry.field
    def campaign(self, id: strawberry.ID) -> Campaign | None:
        return self.campaigns.get(id)


def money(data: Any) -> Money | None:
    if data is None:
        return None
    return Money(amount=Decimal(data["amount"]), currency=data.get("currency", ""))


def metric_point(data: Any) -> MetricPoint:
    return MetricPoint(
        date=datetime.date.fromisoformat(data["date"]),
        impressions=data["impressions"],
        engagements=data.get("engagements", 0),
        engagement_rate=data.get("engagementRate"),
        spend=money(data.get("spend")),
        cpm=money(data.get("cpm")),
    )


def metric_points(data: Any) -> list[MetricPoint] | None:
    return None if data is None else [metric_point(point) for point in data]


def influencer(data: Any) -> Influencer:
    audience = data.get("audience")
    return Influencer(
        id=strawberry.ID(data.get("id", "")),
        handle=data.get("handle", ""),
        display_name=data.get("displayName"),
        country=data.get("country"),
        categories=list(data.get("categories", [])),
        accounts=[
            SocialAccount(
                platform=account["platform"],
                username=account["username"],
                followers=account.get("followers"),
            )
            for account in data.get("accounts", [])
        ],
        audience=None
        if audience is None
        else Audience(
            countries=[
                CountryShare(code=c["code"], share=c["share"]) for c in audience["countries"]
            ]
        ),
        contacts=[
            Contact(role=contact.get("role"), company=contact.get("company"))
            for contact in data.get("contacts", [])
        ],
        points=metric_points(data.get("metrics")),
    )


def campaign(data: Any, campaign_id: str) -> Campaign:
    members = data["members"]
    totals = data.get("totals")
    return Campaign(
        id=strawberry.ID(campaign_id),
        name=data["name"],
        budget=money(data.get("budget")),
        points=metric_points(data.get("metrics")),
        sums=None
        if totals is None
        else MetricTotals(
            impressions=totals["impressions"],
            engagement_rate=totals.get("engagementRate"),
            cpc=money(totals.get("cpc")),
        ),
        connection=CampaignMemberConnection(
            total_count=members["totalCount"],
            edges=[
                CampaignMemberEdge(
                    node=CampaignMember(
                        status=MemberStatus(edge["node"]["status"]),
                        fee=money(edge["node"].get("fee")),
                        influencer=None
                        if edge["node"].get("influencer") is None
                        else influencer(edge["node"]["influencer"]),
                    )
                )
                for edge in members["edges"]
            ],
        ),
    )


def root_from(answers: Any) -> Query:
    """The root value: the hub's answers as objects (`{"list": data, "dashboard": data,
    "campaign_id": id}`; either answer may be absent)."""
    listed = answers.get("list") or {"influencers": {"edges": []}}
    campaigns = {}
    dashboard = answers.get("dashboard")
    if dashboard is not None and dashboard.get("campaign") is not None:
        campaign_id = str(answers["campaign_id"])
        campaigns[campaign_id] = campaign(dashboard["campaign"], campaign_id)
    return Query(
        listed=[
            InfluencerEdge(node=influencer(edge["node"])) for edge in listed["influencers"]["edges"]
        ],
        campaigns=campaigns,
    )


class BareGraphQL(GraphQL[None, Query]):
    """Strawberry's ASGI view with the answers as the root value."""

    def __init__(self, schema: strawberry.Schema, root: Query) -> None:
        super().__init__(schema, graphql_ide=None)
        self.root = root

    async def get_root_value(self, request: Any) -> Query:
        return self.root


def create_app(answers_path: Path) -> Starlette:
    schema = strawberry.Schema(query=Query, extensions=[ParserCache, ValidationCache])
    root = root_from(json.loads(answers_path.read_text(encoding="utf-8")))

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/graphql", BareGraphQL(schema, root), methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the hub's answers (JSON)")
    args = parser.parse_args()
    # The same server settings as `hub serve`: one worker, uvicorn's defaults (uvloop and
    # httptools when installed), no access log.
    uvicorn.run(
        create_app(args.data),
        host=args.host,
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
