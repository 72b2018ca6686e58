"""Metric rollups by day, ISO week or month, totals and the derived rates, computed once here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from hub.errors import BadUserInput

if TYPE_CHECKING:
    from datetime import date

MAX_RANGE_DAYS = 366
_RATE_PLACES = Decimal("0.000001")
_MONEY_PLACES = Decimal("0.01")


class Granularity(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class Counts:
    """Summable counters of one account, day or period; `spend_minor` in the campaign currency."""

    impressions: int = 0
    reach: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0
    video_views: int = 0
    clicks: int = 0
    conversions: int = 0
    spend_minor: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))

    @property
    def engagements(self) -> int:
        return self.likes + self.comments + self.shares + self.saves


class DailyCounts(Protocol):
    """One account's counters for one day, as any upstream record spells them."""

    @property
    def day(self) -> date: ...
    @property
    def impressions(self) -> int: ...
    @property
    def reach(self) -> int: ...
    @property
    def likes(self) -> int: ...
    @property
    def comments(self) -> int: ...
    @property
    def shares(self) -> int: ...
    @property
    def saves(self) -> int: ...
    @property
    def video_views(self) -> int: ...
    @property
    def clicks(self) -> int: ...
    @property
    def conversions(self) -> int: ...
    @property
    def spend_minor(self) -> int: ...


# The counters of a point as one tuple, read in C: roll-ups call it for every daily point.
_values: Callable[[Counts | DailyCounts], tuple[int, ...]] = attrgetter(
    "impressions",
    "reach",
    "likes",
    "comments",
    "shares",
    "saves",
    "video_views",
    "clicks",
    "conversions",
    "spend_minor",
)


@dataclass(frozen=True, slots=True)
class Rates:
    """Derived rates; None where the divisor is 0. Costs are in minor units (2 places)."""

    engagement_rate: Decimal | None
    cpm_minor: Decimal | None
    cpe_minor: Decimal | None
    cpc_minor: Decimal | None


def _ratio(numerator: int, divisor: int, places: Decimal, *, scale: int = 1) -> Decimal | None:
    if divisor == 0:
        return None
    value = Decimal(numerator * scale) / Decimal(divisor)
    return value.quantize(places, rounding=ROUND_HALF_EVEN)


def rates(counts: Counts) -> Rates:
    """Engagement rate = engagements / impressions, CPM = spend / impressions x 1000,
    CPE = spend / engagements, CPC = spend / clicks; each None when its divisor is 0."""
    return Rates(
        engagement_rate=_ratio(counts.engagements, counts.impressions, _RATE_PLACES),
        cpm_minor=_ratio(counts.spend_minor, counts.impressions, _MONEY_PLACES, scale=1000),
        cpe_minor=_ratio(counts.spend_minor, counts.engagements, _MONEY_PLACES),
        cpc_minor=_ratio(counts.spend_minor, counts.clicks, _MONEY_PLACES),
    )


def period_start(day: date, granularity: Granularity) -> date:
    """The first day of `day`'s period: itself, the Monday of its ISO week, or the 1st."""
    if granularity is Granularity.WEEK:
        return day.fromordinal(day.toordinal() - day.weekday())
    if granularity is Granularity.MONTH:
        return day.replace(day=1)
    return day


def roll_up(points: Iterable[DailyCounts], granularity: Granularity) -> list[tuple[date, Counts]]:
    """Counts summed per period, keyed and ordered by the period's first day."""
    starts: dict[date, date] = {}
    groups: dict[date, list[tuple[int, ...]]] = {}
    for point in points:
        day = point.day
        start = starts.get(day)
        if start is None:
            start = starts[day] = period_start(day, granularity)
        groups.setdefault(start, []).append(_values(point))
    # Column sums run in C: this is the hot loop of every metrics field.
    return [
        (start, Counts(*map(sum, zip(*rows, strict=True))))
        for start, rows in sorted(groups.items())
    ]


def total(counts: Iterable[Counts]) -> Counts:
    rows = [_values(item) for item in counts]
    return Counts(*map(sum, zip(*rows, strict=True))) if rows else Counts()


def check_range(
    since: date | None,
    until: date | None,
    *,
    since_argument: str = "from",
    until_argument: str = "to",
    max_days: int = MAX_RANGE_DAYS,
) -> tuple[date, date]:
    """`(since, until)` when both are given, `until >= since` and the span (both ends
    included) is at most `max_days`; else BAD_USER_INPUT naming the argument."""
    if since is None:
        raise BadUserInput(f"`{since_argument}` is required.", argument=since_argument)
    if until is None:
        raise BadUserInput(f"`{until_argument}` is required.", argument=until_argument)
    if until < since:
        raise BadUserInput(
            f"`{until_argument}` is before `{since_argument}`.", argument=until_argument
        )
    days = (until - since).days + 1
    if days > max_days:
        raise BadUserInput(
            f"The range spans {days} days; at most {max_days} are allowed.",
            argument=until_argument,
            limit=max_days,
            actual=days,
        )
    return since, until
