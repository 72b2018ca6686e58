"""Reads of influencers, their platform accounts and the caller's campaigns they are in."""

from __future__ import annotations

import re

from hub.context import Context
from hub.errors import BadUserInput
from hub.ids import is_id
from hub.schema.pagination import PageArgs
from hub.sources.discovery import ProfileRecord
from hub.sources.social import AccountRecord
from hub.sources.store import InfluencerQuery, Page
from hub.store.tables import CampaignRow, InfluencerRow, PlatformAccountRow

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_WORD = re.compile(r"^[a-z0-9_]{1,40}$")
_HANDLE = re.compile(r"^[A-Za-z0-9_.]{1,100}$")


def check_influencer_id(value: str, *, argument: str = "id") -> str:
    if not is_id("influencer", value):
        raise BadUserInput(f"`{argument}` is not an influencer id.", argument=argument)
    return value


async def influencer(context: Context, influencer_id: str) -> InfluencerRow | None:
    row: InfluencerRow | None = await context.loaders.influencer_by_id.load(
        check_influencer_id(influencer_id)
    )
    return row


def influencer_query(
    *,
    country: str | None,
    category: str | None,
    handle_prefix: str | None,
    platform: str | None,
) -> InfluencerQuery:
    if country is not None and not _COUNTRY.match(country):
        raise BadUserInput("`country` must be an ISO 3166 alpha-2 code.", argument="filter.country")
    if category is not None and not _WORD.match(category):
        raise BadUserInput("`category` is not a category name.", argument="filter.category")
    if platform is not None and not _WORD.match(platform):
        raise BadUserInput("`platform` is not a platform name.", argument="filter.platform")
    if handle_prefix is not None and not _HANDLE.match(handle_prefix):
        raise BadUserInput(
            "`handlePrefix` may hold letters, digits, '_' and '.'.", argument="filter.handlePrefix"
        )
    return InfluencerQuery(
        country=country, category=category, handle_prefix=handle_prefix, platform=platform
    )


async def influencers(
    context: Context, query: InfluencerQuery, page: PageArgs
) -> Page[InfluencerRow]:
    rows = await context.store.influencer_page(query, first=page.first, after=page.after)
    for row in rows.rows:
        context.loaders.influencer_by_id.prime(row.id, row)
    return rows


async def influencer_count(context: Context, query: InfluencerQuery) -> int:
    return await context.store.influencer_count(query)


async def accounts(context: Context, influencer_id: str) -> list[PlatformAccountRow]:
    rows: list[PlatformAccountRow] = await context.loaders.accounts_by_influencer.load(
        influencer_id
    )
    return rows


async def account_record(context: Context, external_id: str) -> AccountRecord | None:
    """The social metrics API's figures of one account, batched across the request."""
    record: AccountRecord | None = await context.loaders.account_record_by_external_id.load(
        external_id
    )
    return record


async def profile_record(context: Context, influencer_id: str) -> ProfileRecord | None:
    """The discovery service's profile of one influencer, batched across the request."""
    record: ProfileRecord | None = await context.loaders.profile_record_by_influencer.load(
        influencer_id
    )
    return record


async def campaigns(context: Context, influencer_id: str, page: PageArgs) -> Page[CampaignRow]:
    context.require_scope()
    result: Page[CampaignRow] = await context.loaders.campaign_page_by_influencer.load(
        (influencer_id, page.first, page.after)
    )
    for row in result.rows:
        context.loaders.prime_campaign(row)
    return result


async def campaign_count(context: Context, influencer_id: str) -> int:
    count: int = await context.loaders.campaign_count_by_influencer.load(influencer_id)
    return count
