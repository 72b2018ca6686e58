"""Deterministic demo and bulk data for the own store, generated from a seed."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from hub.ids import new_id
from hub.phones import e164
from hub.store.tables import (
    AuditEventRow,
    CampaignMemberRow,
    CampaignRow,
    ConsentRow,
    ContactRow,
    IdempotencyRow,
    IdempotencySubjectRow,
    InfluencerRow,
    PlatformAccountRow,
    TenantRow,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
DEMO_TENANTS = (("acme", "Acme Agency"), ("globex", "Globex Brands"), ("initech", "Initech Media"))
DEMO_PURPOSES = ("campaign_management", "analytics", "partner_outreach")
PLATFORMS = ("instagram", "tiktok", "youtube")
COUNTRIES = ("PL", "DE", "FR", "ES", "IT", "GB", "US", "SE", "NL", "BR")
CATEGORIES = (
    "beauty",
    "fashion",
    "fitness",
    "food",
    "gaming",
    "tech",
    "travel",
    "music",
    "parenting",
)
_ADJECTIVES = (
    "sunny",
    "urban",
    "wild",
    "daily",
    "happy",
    "bold",
    "calm",
    "pixel",
    "green",
    "lucky",
)
_NOUNS = (
    "travels",
    "kitchen",
    "beats",
    "style",
    "gamer",
    "lens",
    "runner",
    "nomad",
    "glow",
    "maker",
)
_FIRST = ("Anna", "Jan", "Maria", "Luca", "Sofia", "Noah", "Emma", "Leo", "Mia", "Oskar", "Zoe")
_LAST = (
    "Nowak",
    "Muller",
    "Rossi",
    "Garcia",
    "Martin",
    "Smith",
    "Jansen",
    "Berg",
    "Silva",
    "Kowal",
)
_BRANDS = ("Nordic Oats", "Glow Labs", "Peak Gear", "Urban Brew", "Pixel Phones", "Terra Shoes")
_OBJECTIVES = ("awareness", "conversions", "app installs", "product launch", "engagement")
_CAMPAIGN_STATUSES = ("DRAFT", "ACTIVE", "ACTIVE", "PAUSED", "COMPLETED", "CANCELLED")
_MEMBER_STATUSES = ("INVITED", "ACCEPTED", "ACTIVE", "COMPLETED", "DECLINED")
_DELIVERABLES = ("1 reel", "2 stories", "1 video", "3 posts", "1 livestream", "unboxing")
_ROLES = ("self", "manager", "agent", "assistant")
_TABLES: tuple[type[SQLModel], ...] = (
    AuditEventRow,
    IdempotencySubjectRow,
    IdempotencyRow,
    ConsentRow,
    ContactRow,
    CampaignMemberRow,
    CampaignRow,
    PlatformAccountRow,
    InfluencerRow,
    TenantRow,
)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class SeedPlan:
    """How much to generate; `demo()` is what `hub serve --demo` loads into an empty store."""

    influencers: int = 10_000
    campaigns: int = 300
    tenants: int = 3
    members_per_campaign: tuple[int, int] = (5, 25)
    contacts_per_tenant: int = 40
    seed: int = 7

    @classmethod
    def demo(cls) -> SeedPlan:
        return cls(influencers=150, campaigns=18, tenants=3, contacts_per_tenant=24)


def influencer_rows(plan: SeedPlan) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each influencer with its platform accounts; the same plan yields the same rows."""
    rng = random.Random(f"influencers:{plan.seed}")
    for index in range(plan.influencers):
        influencer_id = new_id(
            "influencer", at_ms=EPOCH_MS + index, random_bits=rng.getrandbits(24)
        )
        handle = f"{rng.choice(_ADJECTIVES)}{rng.choice(_NOUNS)}{index}"
        platforms = rng.sample(PLATFORMS, rng.randint(1, len(PLATFORMS)))
        accounts = [
            {
                "id": new_id("account", at_ms=EPOCH_MS + index, random_bits=rng.getrandbits(24)),
                "influencer_id": influencer_id,
                "platform": platform,
                "username": handle if platform != "youtube" else f"{handle}TV",
                "external_id": f"{platform[:2]}{rng.getrandbits(40):012d}",
            }
            for platform in platforms
        ]
        row = {
            "id": influencer_id,
            "handle": handle,
            "display_name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "country": rng.choice(COUNTRIES),
            "categories": sorted(rng.sample(CATEGORIES, rng.randint(1, 3))),
            "created_at": EPOCH + timedelta(milliseconds=index),
        }
        yield row, accounts


def tenant_rows(plan: SeedPlan) -> list[dict[str, Any]]:
    names = list(DEMO_TENANTS) + [
        (f"tenant-{n}", f"Tenant {n}") for n in range(len(DEMO_TENANTS), plan.tenants)
    ]
    return [{"id": tid, "name": name, "created_at": EPOCH} for tid, name in names[: plan.tenants]]


async def is_empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(TenantRow))
    return not count


async def reset(engine: AsyncEngine) -> None:
    """Delete every row of every table (children first)."""
    async with engine.begin() as connection:
        for table in _TABLES:
            await connection.execute(delete(table))


async def seed(engine: AsyncEngine, plan: SeedPlan, *, progress: Progress | None = None) -> None:
    """Insert the plan's rows in chunks, reporting `(stage, done, total)` to `progress`."""
    report = progress or (lambda _stage, _done, _total: None)
    tenants = tenant_rows(plan)
    influencer_ids: list[str] = []
    async with engine.begin() as connection:
        await connection.execute(insert(TenantRow), tenants)
        batch: list[dict[str, Any]] = []
        accounts: list[dict[str, Any]] = []
        for done, (row, row_accounts) in enumerate(influencer_rows(plan), start=1):
            influencer_ids.append(row["id"])
            batch.append(row)
            accounts.extend(row_accounts)
            if len(batch) >= 2000 or done == plan.influencers:
                await connection.execute(insert(InfluencerRow), batch)
                await connection.execute(insert(PlatformAccountRow), accounts)
                batch, accounts = [], []
                report("influencers", done, plan.influencers)
        rng = random.Random(f"campaigns:{plan.seed}")
        members_of_tenant: dict[str, list[str]] = {t["id"]: [] for t in tenants}
        for start in range(0, plan.campaigns, 500):
            campaigns, members = [], []
            for index in range(start, min(start + 500, plan.campaigns)):
                tenant_id = tenants[index % len(tenants)]["id"]
                campaign, campaign_members = _campaign(rng, index, tenant_id, influencer_ids, plan)
                campaigns.append(campaign)
                members.extend(campaign_members)
                members_of_tenant[tenant_id].extend(m["influencer_id"] for m in campaign_members)
            await connection.execute(insert(CampaignRow), campaigns)
            if members:
                await connection.execute(insert(CampaignMemberRow), members)
            report("campaigns", min(start + 500, plan.campaigns), plan.campaigns)
        rng = random.Random(f"contacts:{plan.seed}")
        for number, tenant in enumerate(tenants, start=1):
            contacts, consents = _contacts(rng, tenant["id"], members_of_tenant[tenant["id"]], plan)
            if contacts:
                await connection.execute(insert(ContactRow), contacts)
                await connection.execute(insert(ConsentRow), consents)
            report("contacts", number, len(tenants))


def _campaign(
    rng: random.Random, index: int, tenant_id: str, influencer_ids: list[str], plan: SeedPlan
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    created = EPOCH + timedelta(hours=index)
    starts_on = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    campaign_id = new_id(
        "campaign", at_ms=int(created.timestamp() * 1000), random_bits=rng.getrandbits(24)
    )
    currency = rng.choice(("EUR", "USD", "PLN"))
    campaign = {
        "id": campaign_id,
        "tenant_id": tenant_id,
        "name": f"{rng.choice(_BRANDS)} {rng.choice(_OBJECTIVES).title()} {index + 1}",
        "brand": rng.choice(_BRANDS),
        "status": _CAMPAIGN_STATUSES[index % len(_CAMPAIGN_STATUSES)],
        "objective": rng.choice(_OBJECTIVES),
        "budget_minor": rng.randrange(5_000, 500_000) * 100,
        "currency": currency,
        "starts_on": starts_on,
        "ends_on": starts_on + timedelta(days=rng.randint(14, 90)),
        "created_at": created,
        "updated_at": created,
    }
    low, high = plan.members_per_campaign
    count = min(rng.randint(low, high), len(influencer_ids))
    members = [
        {
            "id": new_id(
                "member",
                at_ms=int(created.timestamp() * 1000) + position,
                random_bits=rng.getrandbits(24),
            ),
            "campaign_id": campaign_id,
            "influencer_id": influencer_id,
            "fee_minor": rng.randrange(200, 20_000) * 100,
            "currency": currency,
            "status": rng.choice(_MEMBER_STATUSES),
            "deliverables": sorted(rng.sample(_DELIVERABLES, rng.randint(1, 3))),
            "created_at": created + timedelta(milliseconds=position),
        }
        for position, influencer_id in enumerate(rng.sample(influencer_ids, count))
    ]
    return campaign, members


def _contacts(
    rng: random.Random, tenant_id: str, member_influencers: list[str], plan: SeedPlan
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Contacts of influencers in the tenant's campaigns, with consents in every state."""
    linked = list(dict.fromkeys(member_influencers))[: plan.contacts_per_tenant]
    contacts: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    for position, influencer_id in enumerate(linked):
        created = EPOCH + timedelta(days=1, minutes=position)
        created_ms = int(created.timestamp() * 1000)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first}.{last}.{tenant_id}{position}@example.com".lower()
        contact_id = new_id("contact", at_ms=created_ms, random_bits=rng.getrandbits(24))
        role = rng.choice(_ROLES)
        phone = f"+48 600 {rng.randrange(100, 999)} {rng.randrange(100, 999)}"
        contacts.append(
            {
                "id": contact_id,
                "tenant_id": tenant_id,
                "influencer_id": influencer_id,
                "crm_id": f"crm-{tenant_id}-{position:05d}",
                "role": role,
                "company": None,
                "full_name": f"{first} {last}",
                "email": email,
                "email_normalized": email,
                "phone": phone,
                "phone_e164": e164(phone),
                "created_at": created,
                "updated_at": created,
                "erased_at": None,
            }
        )
        for shift, purpose in enumerate(DEMO_PURPOSES):
            # Rotating the state per contact and purpose shows every state for every purpose.
            state = ("GRANTED", "WITHDRAWN", "EXPIRED", "NONE")[(position + shift) % 4]
            consents.extend(_consent_history(rng, tenant_id, contact_id, purpose, state, created))
    return contacts, consents


def _consent_history(
    rng: random.Random,
    tenant_id: str,
    contact_id: str,
    purpose: str,
    state: str,
    created: datetime,
) -> list[dict[str, Any]]:
    if state == "NONE":
        return []
    granted_at = created + timedelta(hours=1)
    expires_at = granted_at + (timedelta(days=30) if state == "EXPIRED" else timedelta(days=730))
    base = {
        "tenant_id": tenant_id,
        "contact_id": contact_id,
        "purpose": purpose,
        "lawful_basis": "consent",
        "source": rng.choice(("signup-form", "email-reply", "contract-annex")),
        "evidence": f"doc-{rng.getrandbits(32):08x}",
    }
    granted_ms = int(granted_at.timestamp() * 1000)
    history = [
        {
            **base,
            "id": new_id("consent", at_ms=granted_ms, random_bits=rng.getrandbits(24)),
            "status": "GRANTED",
            "granted_at": granted_at,
            "withdrawn_at": None,
            "expires_at": expires_at,
            "recorded_at": granted_at,
        }
    ]
    if state == "WITHDRAWN":
        withdrawn_at = granted_at + timedelta(days=10)
        history.append(
            {
                **base,
                "id": new_id(
                    "consent",
                    at_ms=int(withdrawn_at.timestamp() * 1000),
                    random_bits=rng.getrandbits(24),
                ),
                "status": "WITHDRAWN",
                "granted_at": granted_at,
                "withdrawn_at": withdrawn_at,
                "expires_at": expires_at,
                "recorded_at": withdrawn_at,
            }
        )
    return history
