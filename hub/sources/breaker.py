"""A circuit breaker per source: fail fast while an upstream is down, probe it now and then."""

from __future__ import annotations

from collections.abc import Callable

from hub.errors import SourceUnavailable
from hub.sources.base import BreakerState, Clock, SourceState


class CircuitBreaker:
    """closed → open after `failures` consecutive failures → half_open once `reset_s` passed.

    Half-open lets exactly one probe call through: its success closes the circuit, its
    failure opens it again for another `reset_s`. While open (or while the probe runs) every
    call fails fast with `SourceUnavailable`. `check()` tells whether the admitted call is the
    probe; each admitted call ends in exactly one of `record_success()`, `record_failure(probe=)`
    or `release(probe=)` (no verdict, e.g. cancelled), so that the probe slot is never lost.

    `on_change(source, opened)` hears each time this breaker's own calls open or close it
    (other replicas are told); `trip()` and `untrip()` apply what another replica saw.
    """

    on_change: Callable[[str, bool], None] | None = None

    def __init__(self, source: str, *, failures: int, reset_s: float, clock: Clock) -> None:
        self.source = source
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._tripped = False
        """Opened by `trip()` (another replica's verdict), not by its own calls."""

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock.monotonic() - self._opened_at >= self._reset_s:
            return "half_open"
        return "open"

    def check(self) -> bool:
        """Admit a call (True: it is the half-open probe) or raise `SourceUnavailable`."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        raise SourceUnavailable(
            self.source, f"The {self.source} source is unavailable: circuit open."
        )

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._probing = False
        self._tripped = False
        if was_open:
            self._changed(opened=False)

    def record_failure(self, *, probe: bool) -> None:
        self._failures += 1
        if probe or (self._opened_at is None and self._failures >= self._threshold):
            self._probing = False if probe else self._probing
            self._opened_at = self._clock.monotonic()
            self._tripped = False
            self._changed(opened=True)

    def trip(self) -> None:
        """Open now, as another replica found the upstream down (unless already open)."""
        if self._opened_at is None:
            self._opened_at = self._clock.monotonic()
            self._tripped = True

    def untrip(self) -> None:
        """Close, if `trip()` opened it and no call of this replica has failed since: the
        replica that found the upstream down found it back."""
        if self._tripped and not self._probing:
            self._opened_at = None
            self._tripped = False

    def _changed(self, *, opened: bool) -> None:
        if self.on_change is not None:
            self.on_change(self.source, opened)

    def release(self, *, probe: bool) -> None:
        if probe:
            self._probing = False

    def snapshot(self) -> SourceState:
        return SourceState(self.source, self.state, self._failures)
