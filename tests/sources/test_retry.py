"""Retry-After parsing, full-jitter backoff and the retry budget."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from hub.sources.retry import RetryBudget, backoff_s, parse_retry_after

NOW_S = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        (formatdate(NOW_S + 7, usegmt=True), 7.0),
        (formatdate(NOW_S - 30, usegmt=True), 0.0),
        ("soon", None),
        ("\u00b2", None),  # a digit to `str.isdigit`, not to `float`
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, now_s=NOW_S) == expected


def test_backoff_is_jittered_within_a_doubling_cap() -> None:
    rng = random.Random(1)
    for retry, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.5), (8, 0.5)]:
        waits = [backoff_s(retry, base_s=0.1, max_s=0.5, rng=rng) for _ in range(200)]
        assert all(0 <= wait <= cap for wait in waits)
        assert max(waits) > cap * 0.8
        assert min(waits) < cap * 0.2


def test_the_budget_allows_retries_in_proportion_to_calls() -> None:
    budget = RetryBudget(0.25, max_tokens=2.0)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    for _ in range(3):
        budget.record_call()
    assert budget.try_spend() is False
    budget.record_call()
    assert budget.try_spend() is True


def test_the_budget_does_not_save_up_beyond_max_tokens() -> None:
    budget = RetryBudget(0.5, max_tokens=2.0)
    for _ in range(100):
        budget.record_call()
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
