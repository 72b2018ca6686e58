"""Counters and histograms kept in process and rendered in the Prometheus text format."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, ...]


class Counter:
    """A monotonically increasing number per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help_text = help_text
        self.labelnames = tuple(labelnames)
        self._values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        _check_labels(self, labels)
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterator[str]:
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_label_text(self.labelnames, labels)} {_number(value)}"


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], *, buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.help_text = help_text
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        _check_labels(self, labels)
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[labels] = self._sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(labels, ()))

    def samples(self) -> Iterator[str]:
        for labels, counts in sorted(self._counts.items()):
            running = 0
            bounds = [*map(_number, self.buckets), "+Inf"]
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                text = _label_text((*self.labelnames, "le"), (*labels, bound))
                yield f"{self.name}_bucket{text} {running}"
            text = _label_text(self.labelnames, labels)
            yield f"{self.name}_sum{text} {_number(self._sums[labels])}"
            yield f"{self.name}_count{text} {running}"


Family = Counter | Histogram


class Metrics:
    """A registry of metric families; asking twice for one name returns the same family."""

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        family = self._families.setdefault(name, Counter(name, help_text, labelnames))
        if not isinstance(family, Counter) or family.labelnames != tuple(labelnames):
            raise ValueError(f"metric {name} is already registered differently")
        return family

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        family = self._families.setdefault(
            name, Histogram(name, help_text, labelnames, buckets=buckets)
        )
        if not isinstance(family, Histogram) or family.labelnames != tuple(labelnames):
            raise ValueError(f"metric {name} is already registered differently")
        return family

    def render_prometheus(self) -> str:
        """Every family in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for name, family in sorted(self._families.items()):
            lines.append(f"# HELP {name} {_escape_help(family.help_text)}")
            lines.append(f"# TYPE {name} {family.kind}")
            lines.extend(family.samples())
        return "\n".join(lines) + "\n" if lines else ""


class SourceMetrics:
    """The families every source adapter records into: calls, errors, retries, latency, cache."""

    def __init__(self, registry: Metrics) -> None:
        self.calls = registry.counter(
            "hub_source_calls_total", "Calls made to an upstream source.", ("source", "method")
        )
        self.errors = registry.counter(
            "hub_source_errors_total", "Failed source calls by kind.", ("source", "kind")
        )
        self.retries = registry.counter(
            "hub_source_retries_total", "Retried attempts of idempotent reads.", ("source",)
        )
        self.latency = registry.histogram(
            "hub_source_request_duration_seconds", "Latency of one upstream attempt.", ("source",)
        )
        self.cache = registry.counter(
            "hub_cache_lookups_total", "Cache lookups by result.", ("source", "result")
        )

    def record_call(self, source: str, method: str) -> None:
        self.calls.inc(source, method)

    def record_error(self, source: str, kind: str) -> None:
        self.errors.inc(source, kind)

    def record_retry(self, source: str) -> None:
        self.retries.inc(source)

    def record_latency(self, source: str, seconds: float) -> None:
        self.latency.observe(seconds, source)

    def record_cache(self, source: str, result: str, *, amount: int = 1) -> None:
        """`result` is `hit`, `stale` (served while refreshing) or `miss`."""
        if amount:
            self.cache.inc(source, result, amount=amount)


def _check_labels(family: Family, labels: Labels) -> None:
    if len(labels) != len(family.labelnames):
        raise ValueError(f"{family.name} takes labels {family.labelnames}, got {labels}")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{name}="{_escape_label(value)}"' for name, value in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value):
        return str(int(value))
    return repr(value)
