"""`Campaign` and `CampaignMember`: tenant-owned rows of the own store."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from hub.context import Context
from hub.errors import BadUserInput, NotFound
from hub.policy.metrics import Granularity
from hub.resolvers import campaigns as resolvers
from hub.resolvers import influencers as influencer_resolvers
from hub.resolvers import metrics as metric_resolvers
from hub.schema.influencers import Influencer
from hub.schema.metrics import Granularity as GranularityType
from hub.schema.metrics import MetricPoint, MetricTotals
from hub.schema.money import Money, MoneyInput
from hub.schema.pagination import Connection, PageArgs, connection
from hub.store.tables import CampaignMemberRow, CampaignRow


@strawberry.enum
class CampaignStatus(Enum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class MemberStatus(Enum):
    INVITED = "INVITED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"


@strawberry.type
class CampaignMember:
    id: strawberry.ID
    status: MemberStatus
    fee: Money | None
    deliverables: list[str]
    campaign_id: strawberry.Private[str]
    influencer_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: CampaignMemberRow) -> CampaignMember:
        return cls(
            id=strawberry.ID(row.id),
            status=MemberStatus(row.status),
            fee=Money.from_minor(row.fee_minor, row.currency),
            deliverables=list(row.deliverables),
            campaign_id=row.campaign_id,
            influencer_id=row.influencer_id,
        )

    @strawberry.field
    async def influencer(self, info: Info[Context, None]) -> Influencer | None:
        row = await influencer_resolvers.influencer(info.context, self.influencer_id)
        return None if row is None else Influencer.from_row(row)

    @strawberry.field
    async def campaign(self, info: Info[Context, None]) -> Campaign | None:
        row = await resolvers.campaign(info.context, self.campaign_id)
        return None if row is None else Campaign.from_row(row)


@strawberry.federation.type(keys=["id"])
class Campaign:
    id: strawberry.ID
    name: str
    brand: str
    status: CampaignStatus
    objective: str | None
    budget: Money | None
    starts_on: date | None
    ends_on: date | None

    @classmethod
    def from_row(cls, row: CampaignRow) -> Campaign:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            brand=row.brand,
            status=CampaignStatus(row.status),
            objective=row.objective,
            budget=Money.from_minor(row.budget_minor, row.currency),
            starts_on=row.starts_on,
            ends_on=row.ends_on,
        )

    @classmethod
    async def resolve_reference(
        cls, info: Info[Context, None], id: strawberry.ID
    ) -> Campaign | None:
        row = await resolvers.campaign(info.context, id)
        return None if row is None else cls.from_row(row)

    @strawberry.field
    async def members(
        self, info: Info[Context, None], first: int | None = 50, after: str | None = None
    ) -> Connection[CampaignMember]:
        context = info.context
        page = PageArgs.parse(
            first, after, kind="member", cap=context.settings.page_size_cap, default=50
        )
        result = await resolvers.members(context, self.id, page)
        return connection(
            result.rows,
            has_next=result.has_next,
            after=page.after,
            node=CampaignMember.from_row,
            row_id=lambda row: row.id,
            count=lambda: resolvers.member_count(context, self.id),
        )

    @strawberry.field(description="Sums over every member's accounts, per period.")
    async def metrics(
        self,
        info: Info[Context, None],
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        granularity: GranularityType | None = Granularity.DAY,  # type: ignore[valid-type]
    ) -> list[MetricPoint] | None:
        row = await self._row(info.context)
        points = await metric_resolvers.campaign_metrics(
            info.context, row, from_, to, granularity or Granularity.DAY
        )
        return MetricPoint.from_points(points)

    @strawberry.field(description="Totals over `from..to`, by default the campaign's dates.")
    async def totals(
        self,
        info: Info[Context, None],
        from_: Annotated[date | None, strawberry.argument(name="from")] = None,
        to: date | None = None,
    ) -> MetricTotals | None:
        row = await self._row(info.context)
        return MetricTotals.from_totals(
            await metric_resolvers.campaign_totals(info.context, row, from_, to)
        )

    async def _row(self, context: Context) -> CampaignRow:
        row = await resolvers.campaign(context, self.id)
        if row is None:
            raise NotFound("No campaign with this id.")
        return row


@strawberry.input
class CreateCampaignInput:
    name: str
    brand: str
    status: CampaignStatus = CampaignStatus.DRAFT
    objective: str | None = None
    budget: MoneyInput | None = None
    starts_on: date | None = None
    ends_on: date | None = None


@strawberry.input(description="Fields left out keep their value; null clears an optional one.")
class UpdateCampaignInput:
    name: str | None = strawberry.UNSET
    brand: str | None = strawberry.UNSET
    status: CampaignStatus | None = strawberry.UNSET
    objective: str | None = strawberry.UNSET
    budget: MoneyInput | None = strawberry.UNSET
    starts_on: date | None = strawberry.UNSET
    ends_on: date | None = strawberry.UNSET


def campaign_changes(
    source: CreateCampaignInput | UpdateCampaignInput,
) -> resolvers.CampaignChanges:
    """Validated changes from either input; an UNSET field stays UNSET."""

    def given(name: str) -> bool:
        return getattr(source, name) is not strawberry.UNSET

    changes: dict[str, object] = {}
    for name, limit, required in (
        ("name", 200, True),
        ("brand", 200, True),
        ("objective", 500, False),
    ):
        if given(name):
            changes[name] = resolvers.text(
                getattr(source, name),
                argument=f"input.{name}",
                max_length=limit,
                required=required,
            )
    if given("status"):
        if source.status is None:
            raise BadUserInput("`status` may not be null.", argument="input.status")
        changes["status"] = source.status.value
    if given("budget"):
        changes["budget"] = (
            None
            if source.budget is None
            else resolvers.budget(
                source.budget.amount, source.budget.currency, argument="input.budget"
            )
        )
    for name in ("starts_on", "ends_on"):
        if given(name):
            changes[name] = getattr(source, name)
    return resolvers.CampaignChanges(**changes)
