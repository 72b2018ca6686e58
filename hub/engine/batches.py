"""Batch resolvers by field coordinate: one call answers a field for every parent of a level.

Each does what the field's own resolver does for one parent, with the same loaders and the
same checks, for all the parents at once (a level's accounts in one statement, its series in
one source batch), so that its answers, errors and audit are the resolver's. A field without
one is resolved by its own resolver, called for every parent of the level at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from hub.engine.run import Batch, BatchResolver
from hub.policy.metrics import Granularity, check_range
from hub.resolvers.campaigns import check_campaign_id
from hub.resolvers.influencers import check_influencer_id
from hub.resolvers.metrics import points_of_series
from hub.schema.audience import Audience
from hub.schema.campaigns import Campaign
from hub.schema.contacts import Contact
from hub.schema.influencers import Influencer, SocialAccount
from hub.schema.metrics import MetricPoint

Values = list[Any]


async def influencer_accounts(batch: Batch) -> Values:
    rows = await batch.context.loaders.accounts_by_influencer.load_all(
        [influencer.id for influencer in batch.parents]
    )
    return [
        accounts
        if isinstance(accounts, Exception)
        else [SocialAccount.from_row(r) for r in accounts]
        for accounts in rows
    ]


async def influencer_metrics(batch: Batch) -> Values:
    """`Influencer.metrics`: the accounts of every influencer in one statement, their daily
    series in one batch per window, each influencer's summed per period."""
    arguments = batch.arguments
    since: date = arguments["from"]
    until: date = arguments["to"]
    granularity: Granularity = arguments.get("granularity") or Granularity.DAY
    check_range(since, until)
    loaders = batch.context.loaders
    accounts = await loaders.accounts_by_influencer.load_all(
        [influencer.id for influencer in batch.parents]
    )
    keys = [
        (account.external_id, since, until)
        for each in accounts
        if not isinstance(each, Exception)
        for account in each
    ]
    series = await loaders.metrics_by_account.load_all(keys) if keys else []
    values: Values = []
    start = 0
    for each in accounts:
        if isinstance(each, Exception):  # this influencer's accounts only: the others go on
            values.append(each)
            continue
        own = series[start : start + len(each)]
        start += len(each)
        failed = next((s for s in own if isinstance(s, Exception)), None)
        if failed is not None:
            values.append(failed)
        else:
            values.append(MetricPoint.from_points(points_of_series(own, granularity, None)))
    return values


def _account_figure(name: str) -> BatchResolver:
    """`SocialAccount.<name>`: every account's figures in one call to the social API."""

    async def resolve(batch: Batch) -> Values:
        loader = batch.context.loaders.account_record_by_external_id
        records = await loader.load_all([account.external_id for account in batch.parents])
        return [
            record if isinstance(record, Exception) or record is None else getattr(record, name)
            for record in records
        ]

    return resolve


async def influencer_audience(batch: Batch) -> Values:
    loader = batch.context.loaders.profile_record_by_influencer
    profiles = await loader.load_all([influencer.id for influencer in batch.parents])
    return [
        profile
        if isinstance(profile, Exception) or profile is None
        else Audience.from_record(profile.audience)
        for profile in profiles
    ]


async def influencer_contacts(batch: Batch) -> Values:
    """`Influencer.contacts`: the caller's contacts of every influencer in one statement."""
    batch.context.require_scope()
    found = await batch.context.loaders.contacts_by_influencer.load_all(
        [influencer.id for influencer in batch.parents]
    )
    return [
        rows if isinstance(rows, Exception) else [Contact.from_row(row) for row in rows]
        for rows in found
    ]


async def contact_company(batch: Batch) -> Values:
    """`Contact.company`: the own store's value, else the CRM's, every CRM record the level
    lacks in one batch."""
    values: Values = [contact.stored_company for contact in batch.parents]
    wanted = [
        (index, (contact.crm_id, contact.id))
        for index, contact in enumerate(batch.parents)
        if contact.stored_company is None and contact.crm_id is not None
    ]
    if not wanted:
        return values
    try:
        batch.context.require_scope()
    except Exception as error:
        for index, _ in wanted:
            values[index] = error
        return values
    records = await batch.context.loaders.crm_record_by_contact.load_all([k for _, k in wanted])
    for (index, _), record in zip(wanted, records, strict=True):
        values[index] = (
            record if isinstance(record, Exception) or record is None else record.company
        )
    return values


def _by_id(
    loader_name: str, attribute: str, make: Callable[[Any], Any], key_of: Callable[[Any, str], str]
) -> BatchResolver:
    """A parent's reference to a row of the store (`attribute` holds its id, checked by
    `key_of(context, id)` as the field's resolver checks it), through the request's loader."""

    async def resolve(batch: Batch) -> Values:
        context = batch.context
        values: Values = []
        keys: list[str] = []
        positions: list[int] = []
        for parent in batch.parents:
            reference = getattr(parent, attribute)
            value: Any = None
            if reference is not None:
                try:
                    keys.append(key_of(context, reference))
                    positions.append(len(values))
                except Exception as error:
                    value = error
            values.append(value)
        if keys:
            rows = await getattr(context.loaders, loader_name).load_all(keys)
            for index, row in zip(positions, rows, strict=True):
                values[index] = row if isinstance(row, Exception) or row is None else make(row)
        return values

    return resolve


def _influencer_key(_context: Any, value: str) -> str:
    return check_influencer_id(value)


def _campaign_key(context: Any, value: str) -> str:
    context.require_scope()
    return check_campaign_id(value)


BATCHES: dict[str, BatchResolver] = {
    "Influencer.accounts": influencer_accounts,
    "Influencer.contacts": influencer_contacts,
    "Contact.company": contact_company,
    "Influencer.metrics": influencer_metrics,
    "Influencer.audience": influencer_audience,
    "SocialAccount.followers": _account_figure("followers"),
    "SocialAccount.following": _account_figure("following"),
    "SocialAccount.posts": _account_figure("posts"),
    "SocialAccount.verified": _account_figure("verified"),
    "CampaignMember.influencer": _by_id(
        "influencer_by_id", "influencer_id", Influencer.from_row, _influencer_key
    ),
    "CampaignMember.campaign": _by_id(
        "campaign_by_id", "campaign_id", Campaign.from_row, _campaign_key
    ),
    "Contact.influencer": _by_id(
        "influencer_by_id", "influencer_id", Influencer.from_row, _influencer_key
    ),
}
