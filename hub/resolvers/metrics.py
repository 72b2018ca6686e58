"""Metric series of influencers and campaigns from the social metrics API, scoped like rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from hub.context import Context
from hub.errors import BadUserInput, NotFound
from hub.memo import Held, IdentityMemo
from hub.policy.metrics import Counts, Granularity, check_range, roll_up, total
from hub.resolvers import campaigns as campaign_resolvers
from hub.resolvers.influencers import check_influencer_id
from hub.schema.pagination import PageArgs
from hub.sources.social import MetricRecord
from hub.store.tables import CampaignMemberRow, CampaignRow, PlatformAccountRow

MAX_MEMBERS = 1000
"""The most members of one campaign whose metrics are summed."""


@dataclass(frozen=True, slots=True)
class Point:
    """One period's counts; `influencer_id` and `platform` set on per-account rows."""

    day: date
    granularity: Granularity
    counts: Counts
    currency: str | None
    influencer_id: str | None = None
    platform: str | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    since: date
    until: date
    counts: Counts
    currency: str | None


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """The checked `MetricsFilter` of `Query.metrics`: a campaign's or an influencer's
    series over a range, or (neither given) the tenant's kept days, by range or by when
    they were kept (`updated_since`)."""

    since: date | None
    until: date | None
    campaign_id: str | None = None
    influencer_id: str | None = None
    platform: str | None = None
    updated_since: datetime | None = None

    @property
    def tenant_wide(self) -> bool:
        return self.campaign_id is None and self.influencer_id is None


async def _series(
    context: Context, accounts: Sequence[PlatformAccountRow], since: date, until: date
) -> list[list[MetricRecord]]:
    loader = context.loaders.metrics_by_account
    found: list[list[MetricRecord]] = await asyncio.gather(
        *(loader.load((account.external_id, since, until)) for account in accounts)
    )
    return found


_ROLLED: IdentityMemo[list[Point]] = IdentityMemo(4096)
"""Roll-ups of the series lists the in-process cache hands out again unchanged, while it holds
them: a dashboard rolls ~2,400 daily points, the same ones on every warm request."""


def points_of_series(
    series: Sequence[list[MetricRecord]], granularity: Granularity, currency: str | None
) -> list[Point]:
    def rolled() -> list[Point]:
        return Held(
            Point(day, granularity, counts, currency)
            for day, counts in roll_up(_flat(series), granularity)
        )

    return _ROLLED.get(series, rolled, extra=(granularity, currency))


async def _accounts_of(context: Context, influencer_ids: Sequence[str]) -> list[PlatformAccountRow]:
    found: list[list[PlatformAccountRow]] = await context.loaders.accounts_by_influencer.load_many(
        list(influencer_ids)
    )
    return [account for accounts in found for account in accounts]


async def influencer_metrics(
    context: Context, influencer_id: str, since: date, until: date, granularity: Granularity
) -> list[Point]:
    """The influencer's accounts summed per period; spend has no known currency here."""
    check_range(since, until)
    accounts = await _accounts_of(context, [influencer_id])
    return points_of_series(await _series(context, accounts, since, until), granularity, None)


async def _members(context: Context, campaign_id: str) -> list[CampaignMemberRow]:
    page = await campaign_resolvers.members(context, campaign_id, PageArgs(MAX_MEMBERS, None))
    return page.rows


def currency_of(campaign: CampaignRow, members: Sequence[CampaignMemberRow]) -> str | None:
    """The campaign's currency, else its members' fee currency: the API's spend is read in it."""
    return campaign.currency or next((m.currency for m in members if m.currency), None)


async def campaign_metrics(
    context: Context, campaign: CampaignRow, since: date, until: date, granularity: Granularity
) -> list[Point]:
    """Every member's accounts summed per period."""
    check_range(since, until)
    members = await _members(context, campaign.id)
    accounts = await _accounts_of(context, [member.influencer_id for member in members])
    series = await _series(context, accounts, since, until)
    return points_of_series(series, granularity, currency_of(campaign, members))


async def campaign_totals(
    context: Context, campaign: CampaignRow, since: date | None, until: date | None
) -> Totals:
    """Totals over `since..until`, by default the campaign's own dates."""
    since, until = check_range(since or campaign.starts_on, until or campaign.ends_on)
    members = await _members(context, campaign.id)
    accounts = await _accounts_of(context, [member.influencer_id for member in members])
    series = await _series(context, accounts, since, until)
    currency = currency_of(campaign, members)
    # Summed from the daily roll-up, which the campaign's daily metrics share.
    counts = total(point.counts for point in points_of_series(series, Granularity.DAY, currency))
    return Totals(since, until, counts, currency)


@dataclass(frozen=True, slots=True)
class FollowedAccounts:
    """The platform accounts of a campaign's members, by external id, and the currency
    their spend is read in."""

    accounts: dict[str, PlatformAccountRow]
    currency: str | None

    def point(self, record: MetricRecord) -> Point | None:
        """The record as a per-account daily point; None for an account not followed."""
        account = self.accounts.get(record.external_id)
        if account is None:
            return None
        ((day, counts),) = roll_up([record], Granularity.DAY)
        return Point(
            day, Granularity.DAY, counts, self.currency, account.influencer_id, account.platform
        )


async def followed_accounts(context: Context, campaign_id: str) -> FollowedAccounts:
    """The accounts whose days a subscription to the campaign receives; NOT_FOUND for a
    campaign outside the caller's tenant or `campaigns` claim."""
    campaign_resolvers.check_campaign_id(campaign_id, argument="campaignId")
    campaign = await campaign_resolvers.campaign(context, campaign_id)
    if campaign is None:
        raise NotFound("No campaign with this id.", argument="campaignId")
    members = await _members(context, campaign.id)
    accounts = await _accounts_of(context, [member.influencer_id for member in members])
    return FollowedAccounts(
        {account.external_id: account for account in accounts}, currency_of(campaign, members)
    )


def _flat(series: Iterable[list[MetricRecord]]) -> Iterator[MetricRecord]:
    return (record for records in series for record in records)


def metrics_query(
    *,
    since: date | None,
    until: date | None,
    campaign_id: str | None,
    influencer_id: str | None,
    platform: str | None,
    updated_since: datetime | None = None,
) -> MetricsQuery:
    """The checked filter: a date range and a campaign or an influencer to report on; or,
    tenant-wide, a date range, `updatedSince`, or both."""
    if campaign_id is None and influencer_id is None:
        if updated_since is not None and since is None and until is None:
            return MetricsQuery(None, None, platform=platform, updated_since=_utc(updated_since))
        since, until = check_range(
            since, until, since_argument="filter.from", until_argument="filter.to"
        )
        return MetricsQuery(
            since,
            until,
            platform=platform,
            updated_since=None if updated_since is None else _utc(updated_since),
        )
    if updated_since is not None:
        raise BadUserInput(
            "`updatedSince` reads the tenant's kept days: give no campaignId or influencerId.",
            argument="filter.updatedSince",
        )
    since, until = check_range(
        since, until, since_argument="filter.from", until_argument="filter.to"
    )
    if campaign_id is not None:
        campaign_resolvers.check_campaign_id(campaign_id, argument="filter.campaignId")
    if influencer_id is not None:
        check_influencer_id(influencer_id, argument="filter.influencerId")
    return MetricsQuery(since, until, campaign_id, influencer_id, platform)


async def metric_rows(
    context: Context, query: MetricsQuery, granularity: Granularity
) -> list[Point]:
    """Per-account rows ordered by (day, influencer, platform); a campaign outside the
    caller's scope, or an influencer outside the campaign, gives no rows."""
    assert query.since is not None and query.until is not None
    currency: str | None = None
    if query.campaign_id is not None:
        campaign = await campaign_resolvers.campaign(context, query.campaign_id)
        if campaign is None:
            return []
        members = await _members(context, campaign.id)
        influencer_ids = [member.influencer_id for member in members]
        currency = currency_of(campaign, members)
        if query.influencer_id is not None:
            influencer_ids = [i for i in influencer_ids if i == query.influencer_id]
    else:
        assert query.influencer_id is not None
        influencer_ids = [query.influencer_id]
    accounts = [
        account
        for account in await _accounts_of(context, influencer_ids)
        if query.platform is None or account.platform == query.platform
    ]
    series = await _series(context, accounts, query.since, query.until)
    rows = [
        Point(day, granularity, counts, currency, account.influencer_id, account.platform)
        for account, records in zip(accounts, series, strict=True)
        for day, counts in roll_up(records, granularity)
    ]
    return sorted(rows, key=row_key)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BadUserInput(
            "`updatedSince` needs a time zone offset.", argument="filter.updatedSince"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadUserInput(
            "`updatedSince` is out of range.", argument="filter.updatedSince"
        ) from None


def row_key(point: Point) -> tuple[str, str, str]:
    return (point.day.isoformat(), point.influencer_id or "", point.platform or "")
