"""`Influencer` and `SocialAccount`: identity from the own store."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from hub.context import Context
from hub.policy.metrics import Granularity
from hub.resolvers import contacts as contact_resolvers
from hub.resolvers import influencers as resolvers
from hub.schema.pagination import Connection, PageArgs, connection
from hub.store.tables import InfluencerRow, PlatformAccountRow

if TYPE_CHECKING:
    from hub.schema.audience import Audience
    from hub.schema.campaigns import Campaign
    from hub.schema.contacts import Contact
    from hub.schema.metrics import MetricPoint

CampaignRef = Annotated["Campaign", strawberry.lazy("hub.schema.campaigns")]
AudienceRef = Annotated["Audience", strawberry.lazy("hub.schema.audience")]
ContactRef = Annotated["Contact", strawberry.lazy("hub.schema.contacts")]
MetricPointRef = Annotated["MetricPoint", strawberry.lazy("hub.schema.metrics")]


@strawberry.type
class SocialAccount:
    id: strawberry.ID
    platform: str
    username: str
    external_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: PlatformAccountRow) -> SocialAccount:
        return cls(
            id=strawberry.ID(row.id),
            platform=row.platform,
            username=row.username,
            external_id=row.external_id,
        )

    @strawberry.field(description="From the social metrics API; null when it fails.")
    async def followers(self, info: Info[Context, None]) -> int | None:
        record = await resolvers.account_record(info.context, self.external_id)
        return None if record is None else record.followers

    @strawberry.field(description="From the social metrics API; null when it fails.")
    async def following(self, info: Info[Context, None]) -> int | None:
        record = await resolvers.account_record(info.context, self.external_id)
        return None if record is None else record.following

    @strawberry.field(description="From the social metrics API; null when it fails.")
    async def posts(self, info: Info[Context, None]) -> int | None:
        record = await resolvers.account_record(info.context, self.external_id)
        return None if record is None else record.posts

    @strawberry.field(description="From the social metrics API; null when it fails.")
    async def verified(self, info: Info[Context, None]) -> bool | None:
        record = await resolvers.account_record(info.context, self.external_id)
        return None if record is None else record.verified


@strawberry.input
class InfluencerFilter:
    country: str | None = strawberry.field(default=None, description="ISO 3166 alpha-2 code.")
    category: str | None = None
    handle_prefix: str | None = None
    platform: str | None = None


@strawberry.federation.type(keys=["id"])
class Influencer:
    id: strawberry.ID
    handle: str
    display_name: str | None
    country: str | None
    categories: list[str]

    @classmethod
    def from_row(cls, row: InfluencerRow) -> Influencer:
        return cls(
            id=strawberry.ID(row.id),
            handle=row.handle,
            display_name=row.display_name,
            country=row.country,
            categories=list(row.categories),
        )

    @classmethod
    async def resolve_reference(
        cls, info: Info[Context, None], id: strawberry.ID
    ) -> Influencer | None:
        row = await resolvers.influencer(info.context, id)
        return None if row is None else cls.from_row(row)

    @strawberry.field
    async def accounts(self, info: Info[Context, None]) -> list[SocialAccount]:
        rows = await resolvers.accounts(info.context, self.id)
        return [SocialAccount.from_row(row) for row in rows]

    @strawberry.field(description="Audience demographics from the discovery service.")
    async def audience(self, info: Info[Context, None]) -> AudienceRef | None:
        from hub.schema.audience import Audience

        profile = await resolvers.profile_record(info.context, self.id)
        return None if profile is None else Audience.from_record(profile.audience)

    @strawberry.field(description="The caller's contacts for this influencer.")
    async def contacts(self, info: Info[Context, None]) -> list[ContactRef]:
        from hub.schema.contacts import Contact

        rows = await contact_resolvers.contacts_of_influencer(info.context, self.id)
        return [Contact.from_row(row) for row in rows]

    @strawberry.field(description="The caller's campaigns this influencer is a member of.")
    async def campaigns(
        self, info: Info[Context, None], first: int | None = 20, after: str | None = None
    ) -> Connection[CampaignRef]:
        from hub.schema.campaigns import Campaign

        context = info.context
        page = PageArgs.parse(first, after, kind="campaign", cap=context.settings.page_size_cap)
        result = await resolvers.campaigns(context, self.id, page)
        return connection(
            result.rows,
            has_next=result.has_next,
            after=page.after,
            node=Campaign.from_row,
            row_id=lambda row: row.id,
            count=lambda: resolvers.campaign_count(context, self.id),
        )

    @strawberry.field(description="Daily, weekly or monthly sums over the influencer's accounts.")
    async def metrics(
        self,
        info: Info[Context, None],
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        granularity: Granularity | None = Granularity.DAY,
    ) -> list[MetricPointRef] | None:
        from hub.resolvers import metrics as metric_resolvers
        from hub.schema.metrics import MetricPoint

        points = await metric_resolvers.influencer_metrics(
            info.context, self.id, from_, to, granularity or Granularity.DAY
        )
        return MetricPoint.from_points(points)
