"""`MetricPoint`, `MetricTotals`, `MetricsFilter`, `MetricConnection`: rolled-up social metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry

from hub.errors import BadUserInput
from hub.memo import IdentityMemo
from hub.metric_history import TenantRows
from hub.money import exponent
from hub.policy import metrics as policy
from hub.resolvers.metrics import Point, Totals, row_key
from hub.schema.money import Money
from hub.schema.pagination import Connection, Edge, PageInfo, known_count, opaque, unwrap
from hub.sources.store import Store

Granularity = strawberry.enum(policy.Granularity, name="Granularity")

_CURSOR_PREFIX = "m1:"
_KEPT_CURSOR_PREFIX = "m2:"


def _money(minor: Decimal | int | None, currency: str | None) -> Money | None:
    if minor is None or currency is None:
        return None
    return Money(amount=Decimal(minor).scaleb(-exponent(currency)), currency=currency)


def _shared_fields(counts: policy.Counts, currency: str | None) -> dict[str, Any]:
    """The count, money and rate fields MetricPoint and MetricTotals share."""
    rates = policy.rates(counts)
    return {
        "impressions": counts.impressions,
        "reach": counts.reach,
        "engagements": counts.engagements,
        "clicks": counts.clicks,
        "conversions": counts.conversions,
        "spend": _money(counts.spend_minor, currency),
        "engagement_rate": None if rates.engagement_rate is None else float(rates.engagement_rate),
        "cpm": _money(rates.cpm_minor, currency),
        "cpe": _money(rates.cpe_minor, currency),
        "cpc": _money(rates.cpc_minor, currency),
    }


@strawberry.type
class MetricPoint:
    date: date
    granularity: Granularity  # type: ignore[valid-type]
    impressions: int
    reach: int
    engagements: int
    likes: int
    comments: int
    shares: int
    saves: int
    video_views: int
    clicks: int
    conversions: int
    spend: Money | None
    engagement_rate: float | None
    cpm: Money | None
    cpe: Money | None
    cpc: Money | None
    influencer_id: strawberry.ID | None = None
    platform: str | None = None

    @classmethod
    def from_points(cls, points: list[Point]) -> list[MetricPoint]:
        """The points of a roll-up, made once per roll-up (roll-ups are remembered)."""
        return _POINTS.get((points,), lambda: [cls.from_point(point) for point in points])

    @classmethod
    def from_point(cls, point: Point) -> MetricPoint:
        counts = point.counts
        return cls(
            date=point.day,
            granularity=point.granularity,
            likes=counts.likes,
            comments=counts.comments,
            shares=counts.shares,
            saves=counts.saves,
            video_views=counts.video_views,
            **_shared_fields(counts, point.currency),
            influencer_id=None
            if point.influencer_id is None
            else strawberry.ID(point.influencer_id),
            platform=point.platform,
        )


_POINTS: IdentityMemo[list[MetricPoint]] = IdentityMemo(4096)


@strawberry.type
class MetricTotals:
    from_: date = strawberry.field(name="from")
    to: date
    impressions: int
    reach: int
    engagements: int
    clicks: int
    conversions: int
    spend: Money | None
    engagement_rate: float | None
    cpm: Money | None
    cpe: Money | None
    cpc: Money | None

    @classmethod
    def from_totals(cls, totals: Totals) -> MetricTotals:
        return cls(
            from_=totals.since,
            to=totals.until,
            **_shared_fields(totals.counts, totals.currency),
        )


@strawberry.input
class MetricsFilter:
    campaign_id: strawberry.ID | None = None
    influencer_id: strawberry.ID | None = None
    platform: str | None = None
    from_: date | None = strawberry.field(default=None, name="from")
    to: date | None = None
    updated_since: datetime | None = strawberry.field(
        default=None,
        description="Without campaignId and influencerId: only the days kept (or changed) "
        "after this time, for incremental pulls; rows come in the order they were kept.",
    )


@strawberry.type(name="MetricConnection")
class MetricConnection(Connection[MetricPoint]):
    """Per-account rows ordered by (date, influencerId, platform)."""


def encode_cursor(point: Point) -> str:
    return opaque(_CURSOR_PREFIX + "|".join(row_key(point)))


def decode_cursor(cursor: str | None) -> tuple[str, str, str] | None:
    """The row key inside `cursor`, or BAD_USER_INPUT when it is not one of ours."""
    if cursor is None:
        return None
    text = unwrap(cursor)
    parts = text.removeprefix(_CURSOR_PREFIX).split("|")
    if not text.startswith(_CURSOR_PREFIX) or len(parts) != 3:
        raise BadUserInput("`after` is not a valid cursor.", argument="after")
    return parts[0], parts[1], parts[2]


def metric_connection(rows: Sequence[Point], *, first: int, after: str | None) -> MetricConnection:
    """One page of `rows` (already ordered by `row_key`) after the cursor."""
    start = decode_cursor(after)
    remaining = [row for row in rows if start is None or row_key(row) > start]
    page = remaining[:first]
    edges = [Edge(cursor=encode_cursor(row), node=MetricPoint.from_point(row)) for row in page]
    return MetricConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(remaining) > first,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=known_count(len(rows)),
    )


async def kept_metric_connection(
    store: Store, rows: TenantRows, *, first: int, after: str | None
) -> MetricConnection:
    """One page of the tenant's kept days, read from the store after the cursor's row."""
    key = None
    if after is not None:
        text = unwrap(after)
        try:
            if not text.startswith(_KEPT_CURSOR_PREFIX):
                raise ValueError(text)
            key = json.loads(text.removeprefix(_KEPT_CURSOR_PREFIX))
            if not isinstance(key, list) or len(key) != len(rows.order()):
                raise ValueError(text)
            if not all(isinstance(part, str) for part in key):
                raise ValueError(text)
            rows.typed(key)
        except (ValueError, OverflowError, RecursionError):
            raise BadUserInput("`after` is not a valid cursor.", argument="after") from None
    found = await rows.page(store, after=key, first=first + 1)
    page = found[:first]
    edges = [
        Edge(
            cursor=opaque(_KEPT_CURSOR_PREFIX + json.dumps(rows.key(row))),
            node=MetricPoint.from_point(
                Point(
                    row.record.day,
                    policy.Granularity.DAY,
                    policy.roll_up([row.record], policy.Granularity.DAY)[0][1],
                    None,
                    row.influencer_id,
                    row.platform,
                )
            ),
        )
        for row in page
    ]

    async def count() -> int:
        return await rows.count(store)

    return MetricConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(found) > first,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=count,
    )
