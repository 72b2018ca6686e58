"""Retries of idempotent reads: exponential backoff with full jitter, `Retry-After`, a budget."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

import httpx

from hub.sources.base import Clock, SourceSettings

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class RetryBudget:
    """Retries may be at most `ratio` of recent calls, so a failing upstream sees at most
    `1 + ratio` times its normal load instead of `1 + retries` times.

    Token-bucket style: every call deposits `ratio` tokens (up to `max_tokens`, which is
    also the starting balance: a few retries are allowed before any traffic), every retry
    spends one whole token.
    """

    def __init__(self, ratio: float, *, max_tokens: float = 10.0) -> None:
        self.ratio = ratio
        self.max_tokens = max_tokens
        self._tokens = max_tokens

    def record_call(self) -> None:
        self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # `str.isdigit` takes "²", which `float` refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def backoff_s(retry: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter: uniform between 0 and `base_s * 2**retry`, capped at `max_s`."""
    return rng.uniform(0.0, min(max_s, base_s * 2.0**retry))


def is_retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRYABLE_STATUSES


async def retry_read(
    attempt: Callable[[], Awaitable[httpx.Response]],
    *,
    settings: SourceSettings,
    budget: RetryBudget,
    clock: Clock,
    rng: random.Random | None = None,
    on_retry: Callable[[], None] | None = None,
) -> httpx.Response:
    """Run `attempt` (an idempotent read) until it answers with a non-retryable status.

    Timeouts (`TimeoutError`, `httpx.TimeoutException`), transport errors and the statuses in
    `RETRYABLE_STATUSES` are retried up to `settings.retries` times while the budget lasts.
    A `Retry-After` header sets the wait; one longer than `settings.timeout_s` is not waited
    for. When retrying stops, the last response is returned or the last error re-raised;
    translating them is the caller's business. Never use this for writes.
    """
    rng = rng or random.Random()
    budget.record_call()
    retry = 0
    while True:
        wait_s: float | None = None
        try:
            response = await attempt()
        except (TimeoutError, httpx.TransportError):
            if retry >= settings.retries or not budget.try_spend():
                raise
        else:
            if not is_retryable(response) or retry >= settings.retries:
                return response
            wait_s = parse_retry_after(response.headers.get("retry-after"), now_s=clock.time())
            if wait_s is not None and wait_s > settings.timeout_s:
                return response
            if not budget.try_spend():
                return response
        if wait_s is None:
            wait_s = backoff_s(
                retry, base_s=settings.backoff_base_s, max_s=settings.backoff_max_s, rng=rng
            )
        retry += 1
        if on_retry is not None:
            on_retry()
        await clock.sleep(wait_s)
