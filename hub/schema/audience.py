"""`Audience`: who follows an influencer, from the discovery service."""

from __future__ import annotations

import strawberry

from hub.sources.discovery import AudienceRecord


@strawberry.type(description="A country's share of the audience, a fraction of 1.")
class CountryShare:
    code: str = strawberry.field(description="ISO 3166 alpha-2 code.")
    share: float


@strawberry.type(description="An age band's share of the audience, a fraction of 1.")
class AgeBandShare:
    band: str
    share: float


@strawberry.type(description="Fractions of the audience by gender; they add up to 1.")
class GenderSplit:
    female: float
    male: float
    other: float


@strawberry.type(description="Audience demographics, as estimated by the discovery service.")
class Audience:
    countries: list[CountryShare]
    age_bands: list[AgeBandShare]
    gender_split: GenderSplit
    interests: list[str]

    @classmethod
    def from_record(cls, record: AudienceRecord) -> Audience:
        split = record.gender_split
        return cls(
            countries=[CountryShare(code=s.label, share=s.share) for s in record.countries],
            age_bands=[AgeBandShare(band=s.label, share=s.share) for s in record.age_bands],
            gender_split=GenderSplit(female=split.female, male=split.male, other=split.other),
            interests=list(record.interests),
        )
