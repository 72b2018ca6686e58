"""`Influencer` and `SocialAccount`: identity from the own store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from hub.context import Context
from hub.resolvers import contacts as contact_resolvers
from hub.resolvers import influencers as resolvers
from hub.schema.pagination import Connection, PageArgs, connection
from hub.store.tables import InfluencerRow, PlatformAccountRow

if TYPE_CHECKING:
    from hub.schema.campaigns import Campaign
    from hub.schema.contacts import Contact

CampaignRef = Annotated["Campaign", strawberry.lazy("hub.schema.campaigns")]
ContactRef = Annotated["Contact", strawberry.lazy("hub.schema.contacts")]


@strawberry.type
class SocialAccount:
    id: strawberry.ID
    platform: str
    username: str

    @classmethod
    def from_row(cls, row: PlatformAccountRow) -> SocialAccount:
        return cls(id=strawberry.ID(row.id), platform=row.platform, username=row.username)


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
