"""SourceClient against scripted upstreams: success, failures translated, retries, breaker."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from hub.errors import SourceError, SourceTimeout, SourceUnavailable
from hub.observability.metrics import Metrics
from hub.sources.http import SourceClient
from hub.sources.memory_cache import MemoryCache
from tests.sources.fakes import FakeClock
from tests.sources.upstream import Upstream, json_answer, make_client, settings

OK = json_answer({"items": [{"id": "c1"}]})


async def test_get_json_returns_the_body_and_sends_params_and_credential() -> None:
    upstream = Upstream(OK)
    async with make_client(upstream) as client:
        payload = await client.get_json("/contacts", {"ids": "c1,c2"})
    assert payload == {"items": [{"id": "c1"}]}
    request = upstream.requests[0]
    assert request.url.path == "/contacts"
    assert request.url.params["ids"] == "c1,c2"
    assert request.headers["authorization"] == "Bearer crm-key"


async def test_parse_turns_the_payload_into_the_callers_value() -> None:
    async with make_client(Upstream(OK)) as client:
        ids = await client.get_json(
            "/contacts", parse=lambda p: [item["id"] for item in p["items"]]
        )
    assert ids == ["c1"]


async def test_an_upstream_timeout_is_source_timeout_after_the_retries() -> None:
    upstream = Upstream(httpx.ReadTimeout("read timed out"))
    async with make_client(upstream) as client:
        with pytest.raises(SourceTimeout) as caught:
            await client.get_json("/contacts")
    assert caught.value.extensions == {"code": "SOURCE_TIMEOUT", "source": "crm"}
    assert upstream.calls == 3


async def test_a_slow_upstream_is_cut_off_at_timeout_s() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(slow)
    started = time.monotonic()
    async with SourceClient(settings(timeout_s=0.05, retries=0), transport=transport) as client:
        with pytest.raises(SourceTimeout):
            await client.get_json("/contacts")
    assert time.monotonic() - started < 0.5


async def test_a_5xx_is_retried_with_jittered_backoff_then_succeeds() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({"error": "busy"}, 503), OK)
    async with make_client(upstream, clock=clock) as client:
        payload = await client.get_json("/contacts")
    assert payload == {"items": [{"id": "c1"}]}
    assert upstream.calls == 2
    assert len(clock.slept) == 1
    assert 0 <= clock.slept[0] <= 0.01


async def test_a_429_waits_for_retry_after_seconds_then_succeeds() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({}, 429, **{"Retry-After": "1"}), OK)
    async with make_client(upstream, clock=clock) as client:
        payload = await client.get_json("/contacts")
    assert payload == {"items": [{"id": "c1"}]}
    assert clock.slept == [1.0]


async def test_a_429_retry_after_http_date_is_waited_for_until_that_date() -> None:
    clock = FakeClock()
    date = formatdate(clock.time() + 2, usegmt=True)
    upstream = Upstream(json_answer({}, 429, **{"Retry-After": date}), OK)
    async with make_client(upstream, clock=clock) as client:
        await client.get_json("/contacts")
    assert clock.slept == [2.0]


async def test_a_429_that_persists_gives_up_after_the_retries() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({}, 429, **{"Retry-After": "1"}))
    async with make_client(upstream, clock=clock) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
    assert "rate limited" in caught.value.message
    assert upstream.calls == 3
    assert clock.slept == [1.0, 1.0]


async def test_a_retry_after_longer_than_the_timeout_is_not_waited_for() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({}, 429, **{"Retry-After": "60"}), OK)
    async with make_client(upstream, clock=clock, timeout_s=2.0) as client:
        with pytest.raises(SourceUnavailable):
            await client.get_json("/contacts")
    assert upstream.calls == 1
    assert clock.slept == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "malformed JSON"),
        (b'{"items": [{"id": "c1"}, {"id": "c', "malformed JSON"),
        (b"\xff\xfe not utf-8", "malformed JSON"),
    ],
)
async def test_a_body_that_is_not_json_is_source_unavailable(body: bytes, reason: str) -> None:
    upstream = Upstream(httpx.Response(200, content=body))
    async with make_client(upstream) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
    assert caught.value.message == f"The crm source is unavailable: {reason}."
    assert upstream.calls == 1


async def test_a_payload_of_the_wrong_shape_is_source_unavailable() -> None:
    async with make_client(Upstream(json_answer(["not", "an", "object"]))) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts", parse=lambda p: p["items"])
    assert caught.value.message == "The crm source is unavailable: unexpected payload shape."


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_source_unavailable_and_not_retried(status: int) -> None:
    upstream = Upstream(json_answer({"error": "no"}, status))
    async with make_client(upstream) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
    assert f"credentials refused (HTTP {status})" in caught.value.message
    assert upstream.calls == 1


async def test_a_connect_error_is_source_unavailable_and_no_httpx_error_escapes() -> None:
    upstream = Upstream(httpx.ConnectError("connection refused"))
    async with make_client(upstream) as client:
        with pytest.raises(SourceError) as caught:
            await client.get_json("/contacts")
    assert type(caught.value) is SourceUnavailable
    assert "ConnectError" in caught.value.message
    assert upstream.calls == 3


async def test_writes_are_not_retried() -> None:
    upstream = Upstream(json_answer({}, 503), json_answer({"id": "c9"}, 201))
    async with make_client(upstream) as client:
        with pytest.raises(SourceUnavailable):
            await client.post_json("/contacts", {"name": "A"}, idempotent=False)
    assert upstream.calls == 1


async def test_an_idempotent_post_is_retried_and_sends_its_json() -> None:
    upstream = Upstream(json_answer({}, 503), json_answer({"found": 2}))
    async with make_client(upstream) as client:
        payload = await client.post_json("/contacts/batch", {"ids": ["a", "b"]}, idempotent=True)
    assert payload == {"found": 2}
    assert upstream.calls == 2
    assert upstream.requests[1].read() == b'{"ids":["a","b"]}'


async def test_a_204_answer_decodes_to_none() -> None:
    async with make_client(Upstream(httpx.Response(204))) as client:
        assert await client.post_json("/contacts/c1/erase", {}, idempotent=False) is None


async def test_the_retry_budget_caps_retries_under_a_failure_storm() -> None:
    metrics = Metrics()
    upstream = Upstream(json_answer({}, 503))
    async with make_client(
        upstream, metrics=metrics, retries=3, retry_budget_ratio=0.2, breaker_failures=1000
    ) as client:
        for _ in range(100):
            with pytest.raises(SourceUnavailable):
                await client.get_json("/contacts")
    # Without a budget: 400 calls. With it: 100 + the 10 starting tokens + 20 % of 100.
    assert 110 <= upstream.calls <= 130
    retries = metrics.value("hub_source_retries_total", source="crm")
    assert retries == upstream.calls - 100


async def test_the_breaker_opens_fails_fast_then_a_probe_closes_it() -> None:
    clock = FakeClock()
    metrics = Metrics()
    upstream = Upstream(json_answer({}, 500), json_answer({}, 500), OK)
    async with make_client(
        upstream, clock=clock, metrics=metrics, retries=0, breaker_failures=2, breaker_reset_s=10.0
    ) as client:
        circuit = "hub_source_circuit_open"
        assert metrics.registry.get_sample_value(circuit, {"source": "crm"}) == 0
        for _ in range(2):
            with pytest.raises(SourceUnavailable):
                await client.get_json("/contacts")
        assert client.state().breaker == "open"
        assert metrics.value(circuit, source="crm") == 1
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
        assert "circuit open" in caught.value.message
        assert upstream.calls == 2
        clock.advance(10.0)
        assert client.state().breaker == "half_open"
        assert await client.get_json("/contacts") == {"items": [{"id": "c1"}]}
        assert client.state().breaker == "closed"
        assert client.state().recent_failures == 0
        assert metrics.value(circuit, source="crm") == 0
    assert upstream.calls == 3


async def test_a_failed_probe_opens_the_circuit_again() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({}, 500))
    async with make_client(upstream, clock=clock, retries=0, breaker_failures=1) as client:
        with pytest.raises(SourceUnavailable):
            await client.get_json("/contacts")
        clock.advance(10.0)
        with pytest.raises(SourceUnavailable):
            await client.get_json("/contacts")
        assert client.state().breaker == "open"
        assert upstream.calls == 2


async def test_a_404_does_not_count_against_the_breaker() -> None:
    upstream = Upstream(json_answer({"error": "no such contact"}, 404))
    async with make_client(upstream, retries=0, breaker_failures=2) as client:
        for _ in range(4):
            with pytest.raises(SourceUnavailable) as caught:
                await client.get_json("/contacts/x")
        assert "HTTP 404" in caught.value.message
        assert client.state().breaker == "closed"
    assert upstream.calls == 4


async def test_the_rate_limiter_spaces_calls_to_the_quota() -> None:
    clock = FakeClock()
    upstream = Upstream(OK, clock=clock)
    async with make_client(upstream, clock=clock, quota_per_s=10.0, quota_burst=2) as client:
        for _ in range(6):
            await client.get_json("/contacts")
    offsets = [round(t - upstream.seen_at[0], 6) for t in upstream.seen_at]
    assert offsets == [0.0, 0.0, 0.1, 0.2, 0.3, 0.4]


async def test_a_call_that_would_wait_past_the_timeout_for_quota_is_refused() -> None:
    clock = FakeClock()
    upstream = Upstream(OK)
    async with make_client(
        upstream, clock=clock, quota_per_s=1.0, quota_burst=1, timeout_s=0.5
    ) as client:
        await client.get_json("/contacts")
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
        assert "quota" in caught.value.message
        assert client.state().breaker == "closed"
    assert upstream.calls == 1


async def test_metrics_count_calls_errors_retries_and_latency() -> None:
    metrics = Metrics()
    upstream = Upstream(json_answer({}, 503), OK, httpx.Response(200, content=b"{"))
    async with make_client(upstream, metrics=metrics) as client:
        await client.get_json("/contacts")
        with pytest.raises(SourceUnavailable):
            await client.get_json("/contacts")
    text = metrics.render().decode()
    assert 'hub_source_calls_total{method="GET",source="crm"} 2.0' in text
    assert 'hub_source_errors_total{kind="malformed",source="crm"} 1.0' in text
    assert 'hub_source_retries_total{source="crm"} 1.0' in text
    assert 'hub_source_request_duration_seconds_count{source="crm"} 3.0' in text


async def test_load_many_fetches_only_what_the_cache_lacks_per_tenant() -> None:
    clock = FakeClock()
    fetched: list[list[str]] = []

    async def fetch(ids: list[str]) -> dict[str, Any]:
        fetched.append(ids)
        return {id_: {"id": id_, "company": f"Co {id_}"} for id_ in ids if id_ != "gone"}

    cache = MemoryCache(clock=clock)
    async with make_client(Upstream(OK), clock=clock, cache=cache) as client:
        first = await client.load_many("contact", ["c1", "c2", "gone"], fetch, tenant="ten_a")
        second = await client.load_many("contact", ["c2", "c3"], fetch, tenant="ten_a")
        other = await client.load_many("contact", ["c1"], fetch, tenant="ten_b")
    assert first == {"c1": {"id": "c1", "company": "Co c1"}, "c2": {"id": "c2", "company": "Co c2"}}
    assert second == {
        "c2": {"id": "c2", "company": "Co c2"},
        "c3": {"id": "c3", "company": "Co c3"},
    }
    assert other == {"c1": {"id": "c1", "company": "Co c1"}}
    assert fetched == [["c1", "c2", "gone"], ["c3"], ["c1"]]


async def test_load_many_tags_entries_so_a_subject_purge_refetches_them() -> None:
    clock = FakeClock()
    fetched: list[list[str]] = []

    async def fetch(ids: list[str]) -> dict[str, Any]:
        fetched.append(ids)
        return {id_: {"id": id_} for id_ in ids}

    cache = MemoryCache(clock=clock)
    async with make_client(Upstream(OK), clock=clock, cache=cache) as client:
        await client.load_many(
            "contact", ["c1", "c2"], fetch, tenant="ten_a", tags_for=lambda id_, _: [f"s:{id_}"]
        )
        assert await cache.purge_tag("s:c1") == 1
        await client.load_many("contact", ["c1", "c2"], fetch, tenant="ten_a")
    assert fetched == [["c1", "c2"], ["c1"]]


async def test_load_many_without_a_cache_fetches_every_time() -> None:
    fetched: list[list[str]] = []

    async def fetch(ids: list[str]) -> dict[str, Any]:
        fetched.append(ids)
        return {id_: {"id": id_} for id_ in ids if id_ != "gone"}

    async with make_client(Upstream(OK)) as client:
        for _ in range(2):
            found = await client.load_many("contact", ["c1", "gone", "c1"], fetch, tenant="t")
            assert found == {"c1": {"id": "c1"}}
        assert await client.load_many("contact", [], fetch, tenant="t") == {}
    assert fetched == [["c1", "gone"], ["c1", "gone"]]


async def test_a_redirect_is_source_unavailable_and_counts_against_the_breaker() -> None:
    upstream = Upstream(httpx.Response(302, headers={"Location": "http://elsewhere.test/"}))
    async with make_client(upstream, retries=0, breaker_failures=1) as client:
        with pytest.raises(SourceUnavailable) as caught:
            await client.get_json("/contacts")
        assert caught.value.message == "The crm source is unavailable: HTTP 302."
        assert client.state().breaker == "open"


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    clock = FakeClock()
    answers = [httpx.Response(500), None, httpx.Response(200, json={"ok": True})]
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if answer is None:
            await gate.wait()
            return httpx.Response(200, json={})
        return answer

    client = SourceClient(
        settings(retries=0, breaker_failures=1, breaker_reset_s=5.0),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    async with client:
        with pytest.raises(SourceUnavailable):
            await client.get_json("/contacts")
        clock.advance(5.0)
        probe = asyncio.create_task(client.get_json("/contacts"))
        await asyncio.sleep(0.01)
        with pytest.raises(SourceUnavailable, match="circuit open"):
            await client.get_json("/contacts")
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
        assert await client.get_json("/contacts") == {"ok": True}
        assert client.state().breaker == "closed"
