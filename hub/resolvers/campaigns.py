"""Reads and writes of campaigns and their members, always inside the caller's row scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hub.context import Context
from hub.errors import BadUserInput, Forbidden, NotFound
from hub.ids import is_id, new_id
from hub.money import to_minor
from hub.resolvers.influencers import check_influencer_id
from hub.schema.pagination import PageArgs
from hub.sources.store import DuplicateRow, MissingParent, Page
from hub.store.tables import CampaignMemberRow, CampaignRow

UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class CampaignChanges:
    """Validated fields of a create or update; UNSET leaves a field as it is."""

    name: Any = UNSET
    brand: Any = UNSET
    status: Any = UNSET
    objective: Any = UNSET
    budget: Any = UNSET  # (minor units, currency) or None
    starts_on: Any = UNSET
    ends_on: Any = UNSET


def check_campaign_id(value: str, *, argument: str = "id") -> str:
    if not is_id("campaign", value):
        raise BadUserInput(f"`{argument}` is not a campaign id.", argument=argument)
    return value


def text(value: str | None, *, argument: str, max_length: int, required: bool) -> str | None:
    """Stripped text within `max_length`, without control characters; an empty required
    value is BAD_USER_INPUT."""
    if value is None:
        if required:
            raise BadUserInput(f"`{argument}` may not be null.", argument=argument)
        return None
    if has_control_characters(value):
        raise BadUserInput(f"`{argument}` may not hold control characters.", argument=argument)
    stripped = value.strip()
    if required and not stripped:
        raise BadUserInput(f"`{argument}` may not be empty.", argument=argument)
    if len(stripped) > max_length:
        raise BadUserInput(
            f"`{argument}` is longer than {max_length} characters.", argument=argument
        )
    return stripped or None


def budget(amount: Decimal, currency: str, *, argument: str) -> tuple[int, str]:
    return to_minor(amount, currency, argument=argument), currency


async def campaign(context: Context, campaign_id: str) -> CampaignRow | None:
    context.require_scope()
    row: CampaignRow | None = await context.loaders.campaign_by_id.load(
        check_campaign_id(campaign_id)
    )
    return row


async def campaigns(context: Context, status: str | None, page: PageArgs) -> Page[CampaignRow]:
    scope = context.require_scope()
    result = await context.store.campaign_page(
        scope, status=status, first=page.first, after=page.after
    )
    for row in result.rows:
        context.loaders.prime_campaign(row)
    return result


async def campaign_count(context: Context, status: str | None) -> int:
    return await context.store.campaign_count(context.require_scope(), status=status)


async def members(context: Context, campaign_id: str, page: PageArgs) -> Page[CampaignMemberRow]:
    result: Page[CampaignMemberRow] = await context.loaders.member_page_by_campaign.load(
        (campaign_id, page.first, page.after)
    )
    return result


async def member_count(context: Context, campaign_id: str) -> int:
    count: int = await context.loaders.member_count_by_campaign.load(campaign_id)
    return count


def has_control_characters(value: str) -> bool:
    return any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value)


async def create_campaign(context: Context, changes: CampaignChanges) -> CampaignRow:
    scope = context.require_scope()
    if scope.campaigns is not None:
        raise Forbidden("A token limited to some campaigns cannot create campaigns.")
    _check_dates(changes.starts_on or None, changes.ends_on or None)
    now = datetime.now(UTC)
    minor, currency = changes.budget if changes.budget not in (UNSET, None) else (None, None)
    row = CampaignRow(
        id=new_id("campaign"),
        tenant_id=scope.tenant,
        name=changes.name,
        brand=changes.brand,
        status=changes.status,
        objective=None if changes.objective is UNSET else changes.objective,
        budget_minor=minor,
        currency=currency,
        starts_on=None if changes.starts_on is UNSET else changes.starts_on,
        ends_on=None if changes.ends_on is UNSET else changes.ends_on,
        created_at=now,
        updated_at=now,
    )
    try:
        await context.store.insert(row)
    except MissingParent:
        raise Forbidden("Your token's tenant is not known to the hub.") from None
    return row


async def update_campaign(
    context: Context, campaign_id: str, changes: CampaignChanges
) -> CampaignRow:
    scope = context.require_scope()
    check_campaign_id(campaign_id)
    values: dict[str, Any] = {
        key: getattr(changes, key)
        for key in ("name", "brand", "status", "objective", "starts_on", "ends_on")
        if getattr(changes, key) is not UNSET
    }
    if changes.budget is not UNSET:
        values["budget_minor"], values["currency"] = changes.budget or (None, None)

    def check(current: CampaignRow) -> None:
        _check_dates(
            values.get("starts_on", current.starts_on), values.get("ends_on", current.ends_on)
        )

    if not values and changes.budget is UNSET:
        raise BadUserInput("`input` changes nothing.", argument="input")
    row = await context.store.update_campaign(
        scope, campaign_id, values, check=check, now=datetime.now(UTC)
    )
    if row is None:
        raise NotFound("No campaign with this id.", argument="id")
    context.loaders.campaign_by_id.clear(campaign_id).prime(campaign_id, row)
    return row


async def add_member(
    context: Context,
    campaign_id: str,
    influencer_id: str,
    fee: tuple[Decimal, str] | None,
) -> CampaignMemberRow:
    check_campaign_id(campaign_id, argument="campaignId")
    check_influencer_id(influencer_id, argument="influencerId")
    found = await campaign(context, campaign_id)
    if found is None:
        raise NotFound("No campaign with this id.", argument="campaignId")
    if await context.loaders.influencer_by_id.load(influencer_id) is None:
        raise NotFound("No influencer with this id.", argument="influencerId")
    fee_minor, currency = budget(*fee, argument="fee") if fee else (None, found.currency)
    row = CampaignMemberRow(
        id=new_id("member"),
        campaign_id=campaign_id,
        influencer_id=influencer_id,
        fee_minor=fee_minor,
        currency=currency,
        status="INVITED",
        deliverables=[],
        created_at=datetime.now(UTC),
    )
    try:
        await context.store.insert(row)
    except DuplicateRow:
        raise BadUserInput(
            "This influencer is already a member of the campaign.", argument="influencerId"
        ) from None
    return row


def _check_dates(starts_on: date | None, ends_on: date | None) -> None:
    if starts_on is not None and ends_on is not None and ends_on < starts_on:
        raise BadUserInput("`endsOn` is before `startsOn`.", argument="endsOn")
