"""Metric rollups, totals and derived rates against hand-computed tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from hub.errors import BadUserInput
from hub.policy.metrics import (
    Counts,
    Granularity,
    Rates,
    check_range,
    period_start,
    rates,
    roll_up,
    total,
)

D = date.fromisoformat


@pytest.mark.parametrize(
    ("day", "granularity", "start"),
    [
        ("2026-03-04", Granularity.DAY, "2026-03-04"),
        ("2026-03-04", Granularity.WEEK, "2026-03-02"),  # a Wednesday
        ("2026-03-02", Granularity.WEEK, "2026-03-02"),  # a Monday starts its own week
        ("2026-03-08", Granularity.WEEK, "2026-03-02"),  # a Sunday ends it
        ("2026-01-01", Granularity.WEEK, "2025-12-29"),  # ISO week 1 starts in December
        ("2024-03-01", Granularity.WEEK, "2024-02-26"),  # across a leap day
        ("2026-03-31", Granularity.MONTH, "2026-03-01"),
        ("2026-03-01", Granularity.MONTH, "2026-03-01"),
        ("2024-02-29", Granularity.MONTH, "2024-02-01"),
    ],
)
def test_period_start_is_the_day_the_monday_or_the_first(
    day: str, granularity: Granularity, start: str
) -> None:
    assert period_start(D(day), granularity) == D(start)


def _c(impressions: int, likes: int = 0, spend: int = 0) -> Counts:
    return Counts(impressions=impressions, likes=likes, spend_minor=spend)


@dataclass(frozen=True)
class Day:
    """A daily record as an upstream adapter would spell it."""

    day: date
    impressions: int
    likes: int
    spend_minor: int
    reach: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0
    video_views: int = 0
    clicks: int = 0
    conversions: int = 0


POINTS = [
    Day(D("2026-02-27"), 100, 1, 10),  # Fri, ISO week of 02-23, February
    Day(D("2026-03-01"), 200, 2, 20),  # Sun, same week, March
    Day(D("2026-03-02"), 400, 4, 40),  # Mon, next week
    Day(D("2026-03-02"), 800, 8, 80),  # a second account, same day
]


@pytest.mark.parametrize(
    ("granularity", "expected"),
    [
        (
            Granularity.DAY,
            [
                ("2026-02-27", _c(100, 1, 10)),
                ("2026-03-01", _c(200, 2, 20)),
                ("2026-03-02", _c(1200, 12, 120)),
            ],
        ),
        (Granularity.WEEK, [("2026-02-23", _c(300, 3, 30)), ("2026-03-02", _c(1200, 12, 120))]),
        (Granularity.MONTH, [("2026-02-01", _c(100, 1, 10)), ("2026-03-01", _c(1400, 14, 140))]),
    ],
)
def test_roll_up_sums_each_period_in_date_order(
    granularity: Granularity, expected: list[tuple[str, Counts]]
) -> None:
    rolled = roll_up(reversed(POINTS), granularity)
    assert rolled == [(D(day), counts) for day, counts in expected]


def test_roll_up_of_no_points_is_empty() -> None:
    assert roll_up([], Granularity.WEEK) == []


def test_counts_add_every_counter_and_engagements_are_likes_comments_shares_saves() -> None:
    one = Counts(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    two = Counts(10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    assert one + two == Counts(11, 22, 33, 44, 55, 66, 77, 88, 99, 110)
    assert (one + two).engagements == 33 + 44 + 55 + 66


def test_a_total_sums_every_counter_of_its_counts() -> None:
    one = Counts(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    two = Counts(10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    assert total([one, two, one]) == Counts(12, 24, 36, 48, 60, 72, 84, 96, 108, 120)
    assert total(iter([two])) == two
    assert total([]) == Counts()


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # 10 engagements over 1000 impressions; spend 5000 minor units
        (
            Counts(
                impressions=1000, likes=4, comments=3, shares=2, saves=1, clicks=8, spend_minor=5000
            ),
            Rates(Decimal("0.010000"), Decimal("5000.00"), Decimal("500.00"), Decimal("625.00")),
        ),
        # thirds round half-even at the last place
        (
            Counts(impressions=3, likes=1, clicks=3, spend_minor=1),
            Rates(Decimal("0.333333"), Decimal("333.33"), Decimal("1.00"), Decimal("0.33")),
        ),
        # no spend: costs are 0, not null
        (
            Counts(impressions=50, likes=5, clicks=1),
            Rates(Decimal("0.100000"), Decimal("0.00"), Decimal("0.00"), Decimal("0.00")),
        ),
        # every divisor 0: every rate null
        (Counts(spend_minor=700), Rates(None, None, None, None)),
        # impressions but no engagements or clicks
        (
            Counts(impressions=2000, spend_minor=300),
            Rates(Decimal("0.000000"), Decimal("150.00"), None, None),
        ),
    ],
)
def test_rates_divide_once_and_are_null_on_a_zero_divisor(counts: Counts, expected: Rates) -> None:
    assert rates(counts) == expected


@pytest.mark.parametrize(
    ("since", "until", "argument"),
    [
        (None, "2026-03-01", "from"),
        ("2026-03-01", None, "to"),
        ("2026-03-02", "2026-03-01", "to"),
        ("2026-01-01", "2027-01-02", "to"),  # 367 days
    ],
)
def test_bad_date_ranges_name_the_argument(
    since: str | None, until: str | None, argument: str
) -> None:
    with pytest.raises(BadUserInput) as caught:
        check_range(None if since is None else D(since), None if until is None else D(until))
    assert caught.value.extensions["argument"] == argument


@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-03-01", "2026-03-01"), ("2026-01-01", "2027-01-01"), ("2024-01-01", "2024-12-31")],
)
def test_ranges_up_to_366_days_are_accepted(since: str, until: str) -> None:
    assert check_range(D(since), D(until)) == (D(since), D(until))
