"""Batch resolvers answer each parent as the field's own resolver would answer it alone."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

from hub.engine.batches import influencer_metrics
from hub.engine.run import Batch
from hub.policy.metrics import Granularity
from hub.sources.social import MetricRecord

SINCE, UNTIL = date(2026, 3, 2), date(2026, 3, 3)


class Loader:
    """Answers `load_all` from a dict; records the keys it was asked for."""

    def __init__(self, answers: dict[Any, Any]) -> None:
        self.answers = answers
        self.asked: list[Any] = []

    async def load_all(self, keys: list[Any]) -> list[Any]:
        self.asked.extend(keys)
        return [self.answers[key] for key in keys]


def record(external_id: str, day: date, impressions: int) -> MetricRecord:
    figures = [0] * (len(MetricRecord._fields) - 2)
    figures[0] = impressions
    return MetricRecord(external_id, day, *figures)


async def test_one_influencers_failed_accounts_fail_only_that_influencers_metrics() -> None:
    failure = RuntimeError("accounts of inf_a unreadable")
    accounts = Loader({"inf_a": failure, "inf_b": [SimpleNamespace(external_id="ext_b")]})
    days = [record("ext_b", SINCE, 5), record("ext_b", UNTIL, 7)]
    series = Loader({("ext_b", SINCE, UNTIL): days})
    context = SimpleNamespace(
        loaders=SimpleNamespace(accounts_by_influencer=accounts, metrics_by_account=series)
    )
    parents = [SimpleNamespace(id="inf_a"), SimpleNamespace(id="inf_b")]
    arguments = {"from": SINCE, "to": UNTIL, "granularity": Granularity.DAY}
    values = await influencer_metrics(Batch(context, parents, arguments, step=None))  # type: ignore[arg-type]
    assert values[0] is failure
    assert [(point.date, point.impressions) for point in values[1]] == [(SINCE, 5), (UNTIL, 7)]
    assert series.asked == [("ext_b", SINCE, UNTIL)]
