"""The influencers and platform accounts of the own store's seed, as the simulators know them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hub.store.seed import SeedPlan, influencer_rows


@dataclass(frozen=True, slots=True)
class RosterAccount:
    external_id: str
    platform: str
    username: str
    influencer_id: str


@dataclass(frozen=True, slots=True)
class RosterInfluencer:
    id: str
    handle: str
    country: str
    categories: tuple[str, ...]
    accounts: tuple[RosterAccount, ...]


@dataclass(frozen=True, slots=True)
class Roster:
    influencers: dict[str, RosterInfluencer]
    accounts: dict[str, RosterAccount]


@lru_cache(maxsize=8)
def build_roster(seed: int, influencers: int) -> Roster:
    """The same rows `hub.store.seed.influencer_rows` yields for this seed and size."""
    by_id: dict[str, RosterInfluencer] = {}
    by_external_id: dict[str, RosterAccount] = {}
    for row, accounts in influencer_rows(SeedPlan(influencers=influencers, seed=seed)):
        owned = tuple(
            RosterAccount(
                external_id=account["external_id"],
                platform=account["platform"],
                username=account["username"],
                influencer_id=row["id"],
            )
            for account in accounts
        )
        by_external_id.update((account.external_id, account) for account in owned)
        by_id[row["id"]] = RosterInfluencer(
            id=row["id"],
            handle=row["handle"],
            country=row["country"],
            categories=tuple(row["categories"]),
            accounts=owned,
        )
    return Roster(influencers=by_id, accounts=by_external_id)
