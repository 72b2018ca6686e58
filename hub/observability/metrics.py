"""The hub's Prometheus metrics: every family, the bounds of its labels, and `/metrics`.

    request ──▶ app.handle_graphql ──▶ record_request    requests, duration, errors by code
    cost extension (both executors) ──▶ record_cost_rejection
    consent decision, kept answers too ──▶ record_consent_decisions
    audit log, source adapters, caches ──▶ their families below
                                            │
    GET /metrics ◀── render() ◀─────────────┘ this app's registry, or, under
                                              `hub serve --workers N`, every worker's files

Each app builds its own `Metrics` with a registry of its own (tests run many apps in one
process). When prometheus_client runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, which
`hub serve` sets for more than one worker), values are kept in files per process and
`render` adds up every worker's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from hub import errors

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus (2.x and 3.x) reads; the names need none of 1.0.0's escaping."""
ANONYMOUS = "anonymous"
OTHER = "other"
"""The label of every value past a label's bound."""
MAX_OPERATION_NAME_CHARS = 100
OUTCOMES = ("ok", "partial", "refused", "error")
GRAPHQL_CODES = ("GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED")
DECISIONS = ("allowed", "masked", "redacted")
COST_REJECTIONS = ("max_query_cost", "client_budget", "tenant_budget")
"""Why the cost extension refuses an operation: its estimate is over the caller's maximum,
or the client's bucket cannot pay for it."""

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


def is_multiprocess() -> bool:
    """Whether prometheus_client keeps values in per-process files (`PROMETHEUS_MULTIPROC_DIR`
    was set when it was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def known_codes() -> frozenset[str]:
    """Every `extensions.code` the hub gives an error: the HubError tree's and graphql-core's."""
    found = set(GRAPHQL_CODES)
    pending: list[type[errors.HubError]] = [errors.HubError]
    while pending:
        kind = pending.pop()
        found.add(kind.code)
        pending.extend(kind.__subclasses__())
    return frozenset(found)


class OperationLabels:
    """The `operation` label of a request: `anonymous` without a name; a registered name (a
    trusted document's operation) as it is; any other name as it is while it is one of the
    first `max_seen` distinct names this process saw, else `other`. A name that is not a
    GraphQL name, or is longer than `MAX_OPERATION_NAME_CHARS`, is `other` too."""

    def __init__(self, registered: Iterable[str] = (), *, max_seen: int) -> None:
        self.registered = frozenset(registered)
        self.max_seen = max_seen
        self._seen: set[str] = set()

    def label(self, name: str | None) -> str:
        if not name:
            return ANONYMOUS
        if name in self.registered or name in self._seen:
            return name
        if len(name) > MAX_OPERATION_NAME_CHARS or not _NAME.match(name):
            return OTHER
        if len(self._seen) < self.max_seen:
            self._seen.add(name)
            return name
        return OTHER


class SourceMetrics:
    """What a source adapter or a cache records; the families are `Metrics`'s."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def record_call(self, source: str, method: str) -> None:
        self._metrics.source_calls.labels(source, method).inc()

    def record_error(self, source: str, kind: str) -> None:
        self._metrics.source_errors.labels(source, kind).inc()

    def record_retry(self, source: str) -> None:
        self._metrics.source_retries.labels(source).inc()

    def record_latency(self, source: str, seconds: float) -> None:
        self._metrics.source_latency.labels(source).observe(seconds)

    def record_cache(self, source: str, result: str, *, amount: int = 1) -> None:
        """`result` is `hit`, `stale` (served while refreshing) or `miss`."""
        if amount:
            self._metrics.cache_lookups.labels(source, result).inc(amount)

    def record_circuit(self, source: str, *, is_open: bool) -> None:
        """1 while the source's circuit is not closed (open, or half open for its probe)."""
        self._metrics.circuit_open.labels(source).set(1 if is_open else 0)


class Metrics:
    """Every metric family of one hub, on a registry of its own."""

    def __init__(
        self,
        *,
        registered_operations: Iterable[str] = (),
        max_operations: int = 100,
        consent_fields: Collection[str] = (),
    ) -> None:
        # `_created` series double the output and no alert uses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.operations = OperationLabels(registered_operations, max_seen=max_operations)
        self.codes = known_codes()
        self.consent_fields = frozenset(consent_fields)
        registry = self.registry
        self.requests = Counter(
            "hub_graphql_requests_total",
            "GraphQL requests by operation and outcome (ok, partial, refused, error).",
            ("operation", "outcome"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "hub_graphql_request_duration_seconds",
            "Time from a GraphQL request's arrival to its answer.",
            ("operation",),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.errors = Counter(
            "hub_graphql_errors_total",
            "Errors in GraphQL answers, by extensions.code.",
            ("code",),
            registry=registry,
        )
        self.cost_rejections = Counter(
            "hub_cost_rejections_total",
            "Operations refused by the cost policy before running, by reason.",
            ("reason",),
            registry=registry,
        )
        self.consent_decisions = Counter(
            "hub_consent_decisions_total",
            "Consent decisions on personal-data fields (allowed, masked, redacted).",
            ("field", "decision"),
            registry=registry,
        )
        self.audit_events_dropped = Counter(
            "hub_audit_events_dropped_total",
            "Audit events never written: refused by a full buffer or by the store.",
            registry=registry,
        )
        self.source_calls = Counter(
            "hub_source_calls_total",
            "Calls made to an upstream source.",
            ("source", "method"),
            registry=registry,
        )
        self.source_errors = Counter(
            "hub_source_errors_total",
            "Failed source calls by kind.",
            ("source", "kind"),
            registry=registry,
        )
        self.source_retries = Counter(
            "hub_source_retries_total",
            "Retried attempts of idempotent reads.",
            ("source",),
            registry=registry,
        )
        self.source_latency = Histogram(
            "hub_source_request_duration_seconds",
            "Latency of one upstream attempt.",
            ("source",),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.cache_lookups = Counter(
            "hub_cache_lookups_total",
            "Source cache lookups by result (hit, stale, miss).",
            ("source", "result"),
            registry=registry,
        )
        self.circuit_open = Gauge(
            "hub_source_circuit_open",
            "1 while a source's circuit breaker is not closed.",
            ("source",),
            registry=registry,
            # Under several workers: open when it is open in any live worker.
            multiprocess_mode="livemax",
        )
        self.response_cache_lookups = Counter(
            "hub_response_cache_lookups_total",
            "Kept-answer lookups by result (hit, miss).",
            ("result",),
            registry=registry,
        )
        self.engine_fallbacks = Counter(
            "hub_engine_fallbacks_total",
            "Operations run on graphql-core instead of the planned executor, by reason.",
            ("reason",),
            registry=registry,
        )
        self.sources = SourceMetrics(self)

    def record_request(
        self,
        operation: str | None,
        *,
        status: int,
        answered: bool,
        codes: Iterable[str],
        seconds: float,
    ) -> None:
        """One GraphQL request answered with `status`: `answered` when the body holds `data`,
        `codes` the `extensions.code` of each of its errors."""
        label = self.operations.label(operation)
        counted = [code if code in self.codes else OTHER for code in codes]
        for code in counted:
            self.errors.labels(code).inc()
        self.requests.labels(label, _outcome(status, answered=answered, codes=counted)).inc()
        self.request_duration.labels(label).observe(seconds)

    def record_cost_rejection(self, reason: str) -> None:
        self.cost_rejections.labels(reason if reason in COST_REJECTIONS else OTHER).inc()

    def record_consent_decision(self, field: str, decision: str, *, amount: int = 1) -> None:
        """`field` is the consent policy's coordinate (`Contact.email`); `decision` is
        `allowed`, `masked` or `redacted`."""
        label = field if field in self.consent_fields else OTHER
        outcome = decision if decision in DECISIONS else OTHER
        self.consent_decisions.labels(label, outcome).inc(amount)

    def record_audit_dropped(self, count: int) -> None:
        self.audit_events_dropped.inc(count)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value in this process (0 when it has none): what the tests read."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    def render(self) -> bytes:
        """Every family in the Prometheus text format: this app's, or in multiprocess mode
        the sum over every worker's files."""
        if not is_multiprocess():
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def close(self) -> None:
        """The worker stops: its gauges leave the multiprocess sums (counters stay)."""
        if is_multiprocess():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _outcome(status: int, *, answered: bool, codes: Collection[str]) -> str:
    if status >= 500 or "INTERNAL_SERVER_ERROR" in codes:
        return "error"
    if not answered:
        return "refused"
    return "partial" if codes else "ok"
