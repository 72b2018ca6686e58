"""The discovery service adapter: influencer profiles and audiences, one GraphQL query per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from hub.memo import HeldMap, IdentityMemo
from hub.sources import shapes
from hub.sources.http import SourceClient

MAX_IDS = 100
"""The most profiles one upstream query may ask for."""

PROFILES_QUERY = """
query Profiles($ids: [ID!]!) {
  profiles(ids: $ids) {
    influencerId handle bio language engagementRate
    audience {
      countries { code share }
      ageBands { band share }
      genderSplit { female male other }
      interests
    }
  }
}
"""


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One slice of an audience: a country code or an age band and its fraction."""

    label: str
    share: float


@dataclass(frozen=True, slots=True)
class GenderSplitRecord:
    female: float
    male: float
    other: float


@dataclass(frozen=True, slots=True)
class AudienceRecord:
    countries: tuple[ShareRecord, ...]
    age_bands: tuple[ShareRecord, ...]
    gender_split: GenderSplitRecord
    interests: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    influencer_id: str
    handle: str
    bio: str
    language: str
    engagement_rate: float
    audience: AudienceRecord


class DiscoveryLookup(Protocol):
    """Batch reads of the discovery service; unknown ids are left out. Failures raise
    `SourceUnavailable` or `SourceTimeout`."""

    async def profiles(self, influencer_ids: Sequence[str]) -> dict[str, ProfileRecord]: ...


class DiscoverySource:
    """`DiscoveryLookup` over GraphQL (`POST /graphql`), cached."""

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def profiles(self, influencer_ids: Sequence[str]) -> dict[str, ProfileRecord]:
        found = await self.client.load_many("profile", influencer_ids, self._fetch, tenant=None)
        return {
            id_: _PROFILES.get((value,), partial(_profile, value)) for id_, value in found.items()
        }

    async def _fetch(self, ids: list[str]) -> Mapping[str, Any]:
        answers = await asyncio.gather(
            *(
                self.client.post_json(
                    "/graphql",
                    {"query": PROFILES_QUERY, "variables": {"ids": batch}},
                    idempotent=True,
                    parse=_profiles,
                )
                for batch in shapes.chunks(ids, MAX_IDS)
            )
        )
        # Stored as checked upstream JSON; `_profile` reads it again on the way out (once
        # per cached answer, `_PROFILES`).
        return {
            shapes.text(item, "influencerId"): HeldMap(item)
            for answer in answers
            for item in answer
        }


_PROFILES: IdentityMemo[ProfileRecord] = IdentityMemo(4096)
"""The record of each cached profile while the cache holds it: the in-process cache hands out
the same dict on every hit; those from Redis are new, read each time."""


def _profiles(payload: Any) -> list[Mapping[str, Any]]:
    data = shapes.obj(payload).get("data")
    if data is None or shapes.obj(data).get("profiles") is None:
        raise ValueError("no profiles in the answer")
    found = []
    for item in shapes.items(data, "profiles"):
        if item is not None:
            _profile(item)  # checks the shape now, so that a bad one fails the call
            found.append(shapes.obj(item))
    return found


def _profile(item: Any) -> ProfileRecord:
    audience = shapes.obj(shapes.obj(item)["audience"])
    split = shapes.obj(audience["genderSplit"])
    interests = shapes.items(audience, "interests")
    if not all(isinstance(interest, str) for interest in interests):
        raise TypeError("interests: expected strings")
    return ProfileRecord(
        influencer_id=shapes.text(item, "influencerId"),
        handle=shapes.text(item, "handle"),
        bio=shapes.text(item, "bio"),
        language=shapes.text(item, "language"),
        engagement_rate=shapes.number(item, "engagementRate"),
        audience=AudienceRecord(
            countries=tuple(
                ShareRecord(shapes.text(s, "code"), shapes.number(s, "share"))
                for s in shapes.items(audience, "countries")
            ),
            age_bands=tuple(
                ShareRecord(shapes.text(s, "band"), shapes.number(s, "share"))
                for s in shapes.items(audience, "ageBands")
            ),
            gender_split=GenderSplitRecord(
                female=shapes.number(split, "female"),
                male=shapes.number(split, "male"),
                other=shapes.number(split, "other"),
            ),
            interests=tuple(interests),
        ),
    )
