"""The circuit breaker's states on an injected clock."""

from __future__ import annotations

import pytest

from hub.errors import SourceUnavailable
from hub.sources.breaker import CircuitBreaker
from tests.sources.fakes import FakeClock


def make_breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker("social", failures=3, reset_s=5.0, clock=clock)


def test_the_circuit_opens_after_consecutive_failures_only() -> None:
    breaker = make_breaker(FakeClock())
    for _ in range(2):
        breaker.check()
        breaker.record_failure(probe=False)
    breaker.check()
    breaker.record_success()
    for _ in range(2):
        breaker.check()
        breaker.record_failure(probe=False)
    assert breaker.snapshot().breaker == "closed"
    breaker.check()
    breaker.record_failure(probe=False)
    assert breaker.snapshot().breaker == "open"
    assert breaker.snapshot().recent_failures == 3
    with pytest.raises(SourceUnavailable) as caught:
        breaker.check()
    assert caught.value.extensions == {"code": "SOURCE_UNAVAILABLE", "source": "social"}


def test_half_open_lets_one_probe_through_and_its_success_closes_the_circuit() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(3):
        breaker.record_failure(probe=False)
    clock.advance(4.9)
    assert breaker.snapshot().breaker == "open"
    clock.advance(0.1)
    assert breaker.snapshot().breaker == "half_open"
    assert breaker.check() is True
    with pytest.raises(SourceUnavailable):
        breaker.check()
    breaker.record_success()
    assert breaker.snapshot().breaker == "closed"
    assert breaker.check() is False


def test_a_failed_probe_opens_the_circuit_for_another_reset_period() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(3):
        breaker.record_failure(probe=False)
    clock.advance(5.0)
    probe = breaker.check()
    clock.advance(1.0)
    breaker.record_failure(probe=probe)
    clock.advance(4.9)
    assert breaker.snapshot().breaker == "open"
    clock.advance(0.1)
    assert breaker.snapshot().breaker == "half_open"


def test_a_released_probe_lets_the_next_call_probe() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    for _ in range(3):
        breaker.record_failure(probe=False)
    clock.advance(5.0)
    probe = breaker.check()
    breaker.release(probe=probe)
    assert breaker.check() is True
