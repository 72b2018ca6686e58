"""A scripted upstream for `httpx.MockTransport` and a `SourceClient` built on it."""

from __future__ import annotations

import random
from typing import Any

import httpx

from hub.observability.metrics import Metrics
from hub.sources.base import Clock, SourceSettings
from hub.sources.cache import Cache
from hub.sources.http import SourceClient
from tests.sources.fakes import FakeClock

Answer = httpx.Response | Exception


class Upstream:
    """Answers requests with `answers` in order, repeating the last; records what it saw."""

    def __init__(self, *answers: Answer, clock: Clock | None = None) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.seen_at: list[float] = []
        self._clock = clock

    @property
    def calls(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._clock is not None:
            self.seen_at.append(self._clock.monotonic())
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        # A fresh response each time: a response object belongs to one request.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def json_answer(payload: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def settings(**overrides: Any) -> SourceSettings:
    values: dict[str, Any] = {
        "name": "crm",
        "base_url": "http://crm.test",
        "credential": "crm-key",
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "breaker_failures": 5,
        "breaker_reset_s": 10.0,
        **overrides,
    }
    return SourceSettings(**values)


def make_client(
    upstream: Upstream,
    *,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    cache: Cache | None = None,
    **overrides: Any,
) -> SourceClient:
    return SourceClient(
        settings(**overrides),
        transport=httpx.MockTransport(upstream),
        clock=clock or FakeClock(),
        metrics=metrics,
        cache=cache,
        rng=random.Random(7),
    )
