"""TokenBucket: the per-key quota, driven by a given clock."""

from __future__ import annotations

import pytest

from hub.simulators.quota import TokenBucket


@pytest.mark.parametrize(
    ("rate_per_s", "calls_at_s", "answers"),
    [
        (2.0, [0.0, 0.0, 0.0], [None, None, 1]),
        (2.0, [0.0, 0.0, 0.5], [None, None, None]),
        (2.0, [0.0, 0.0, 0.4, 0.4], [None, None, 1, 1]),
        (0.5, [0.0, 0.0], [None, 2]),
        (0.25, [10.0, 11.0], [None, 3]),
        (10.0, [0.0] * 11, [None] * 10 + [1]),
        (1.0, [0.0, 5.0, 5.0], [None, None, 1]),
    ],
)
def test_a_bucket_allows_its_rate_and_says_how_long_to_wait(
    rate_per_s: float, calls_at_s: list[float], answers: list[int | None]
) -> None:
    bucket = TokenBucket(rate_per_s)
    assert [bucket.take(now_s) for now_s in calls_at_s] == answers
