"""Counters and histograms rendered in the Prometheus text format."""

from __future__ import annotations

import pytest

from hub.sources.metrics import Metrics, SourceMetrics


def test_counters_render_with_help_type_and_escaped_labels() -> None:
    metrics = Metrics()
    errors = metrics.counter("hub_errors_total", "Errors.\nBy kind.", ("kind",))
    errors.inc('say "hi"\\')
    errors.inc('say "hi"\\', amount=2)
    assert metrics.render_prometheus() == (
        "# HELP hub_errors_total Errors.\\nBy kind.\n"
        "# TYPE hub_errors_total counter\n"
        'hub_errors_total{kind="say \\"hi\\"\\\\"} 3\n'
    )


def test_histograms_render_cumulative_buckets_sum_and_count() -> None:
    metrics = Metrics()
    latency = metrics.histogram("hub_latency_seconds", "Latency.", ("source",), buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        latency.observe(seconds, "crm")
    lines = metrics.render_prometheus().splitlines()
    assert lines[2:] == [
        'hub_latency_seconds_bucket{source="crm",le="0.1"} 2',
        'hub_latency_seconds_bucket{source="crm",le="1"} 3',
        'hub_latency_seconds_bucket{source="crm",le="+Inf"} 4',
        'hub_latency_seconds_sum{source="crm"} 3.65',
        'hub_latency_seconds_count{source="crm"} 4',
    ]
    assert latency.count("crm") == 4


def test_asking_twice_for_a_family_returns_the_same_one() -> None:
    metrics = Metrics()
    first = SourceMetrics(metrics)
    second = SourceMetrics(metrics)
    first.record_cache("crm", "hit", amount=2)
    second.record_cache("crm", "hit")
    assert (
        metrics.counter("hub_cache_lookups_total", "", ("source", "result")).value("crm", "hit")
        == 3
    )
    with pytest.raises(ValueError, match="registered differently"):
        metrics.histogram("hub_cache_lookups_total", "")


def test_a_wrong_number_of_label_values_is_refused() -> None:
    counter = Metrics().counter("hub_calls_total", "Calls.", ("source", "method"))
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc("crm")


def test_an_empty_registry_renders_nothing() -> None:
    assert Metrics().render_prometheus() == ""
