"""The social adapter against scripted upstreams: records translated, batches, failures."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import pytest

from hub.errors import SourceError, SourceTimeout, SourceUnavailable
from hub.memo import IdentityMemo
from hub.sources import social as social_module
from hub.sources.memory_cache import MemoryCache
from hub.sources.social import AccountRecord, MetricRecord, SocialSource
from tests.sources.fakes import FakeClock
from tests.sources.upstream import Upstream, json_answer, make_client


def account(external_id: str, followers: int = 1200) -> dict[str, Any]:
    return {
        "account_id": external_id,
        "platform": "instagram",
        "username": f"user_{external_id}",
        "followers": followers,
        "following": 80,
        "posts": 31,
        "verified": True,
    }


def metric(external_id: str, day: str) -> dict[str, Any]:
    counts = ["impressions", "reach", "likes", "comments", "shares", "saves", "video_views"]
    return {
        "account_id": external_id,
        "date": day,
        **{name: index + 10 for index, name in enumerate(counts)},
        "clicks": 7,
        "conversions": 2,
        "spend_cents": 1999,
    }


def social(upstream: Upstream, **overrides: Any) -> SocialSource:
    return SocialSource(make_client(upstream, name="social", **overrides))


async def test_accounts_are_translated_into_records_by_external_id() -> None:
    upstream = Upstream(json_answer({"data": [account("in1"), account("tt2", 5)]}))
    found = await social(upstream).accounts(["in1", "tt2", "zz9"])
    assert found == {
        "in1": AccountRecord("in1", "instagram", "user_in1", 1200, 80, 31, True),
        "tt2": AccountRecord("tt2", "instagram", "user_tt2", 5, 80, 31, True),
    }
    assert upstream.requests[0].url.params["ids"] == "in1,tt2,zz9"


async def test_more_than_a_hundred_accounts_are_fetched_in_chunks_of_a_hundred() -> None:
    upstream = Upstream(json_answer({"data": []}))
    await social(upstream).accounts([f"in{n}" for n in range(250)])
    sizes = sorted(len(r.url.params["ids"].split(",")) for r in upstream.requests)
    assert sizes == [50, 100, 100]


async def test_daily_metrics_is_one_batch_post_with_the_window() -> None:
    points = [metric("in1", "2026-03-01"), metric("in1", "2026-03-02"), metric("tt2", "2026-03-01")]
    upstream = Upstream(json_answer({"data": points}))
    found = await social(upstream).daily_metrics(
        ["in1", "tt2", "zz9"], date(2026, 3, 1), date(2026, 3, 2)
    )
    assert upstream.calls == 1
    sent = json.loads(upstream.requests[0].content)
    assert sent == {
        "account_ids": ["in1", "tt2", "zz9"],
        "since": "2026-03-01",
        "until": "2026-03-02",
    }
    assert [p.day for p in found["in1"]] == [date(2026, 3, 1), date(2026, 3, 2)]
    assert found["tt2"][0] == MetricRecord(
        "tt2", date(2026, 3, 1), 10, 11, 12, 13, 14, 15, 16, 7, 2, 1999
    )
    assert found["zz9"] == []


async def test_cached_accounts_are_not_fetched_again() -> None:
    clock = FakeClock()
    upstream = Upstream(json_answer({"data": [account("in1")]}))
    source = social(upstream, clock=clock, cache=MemoryCache(clock=clock))
    first = await source.accounts(["in1"])
    second = await source.accounts(["in1"])
    assert first == second
    assert upstream.calls == 1


async def test_a_429_with_retry_after_is_waited_for_then_answered() -> None:
    clock = FakeClock()
    upstream = Upstream(
        json_answer({}, 429, **{"Retry-After": "1"}),
        json_answer({"data": [account("in1")]}),
        clock=clock,
    )
    found = await social(upstream, clock=clock).accounts(["in1"])
    assert found["in1"].followers == 1200
    assert upstream.seen_at[1] - upstream.seen_at[0] >= 1


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (httpx.ReadTimeout("slow"), SourceTimeout, "timed out"),
        (json_answer({"error": {}}, 503), SourceUnavailable, "HTTP 503"),
        (json_answer({}, 429, **{"Retry-After": "1"}), SourceUnavailable, "rate limited"),
        (httpx.Response(200, content=b"{not json"), SourceUnavailable, "malformed JSON"),
        (
            httpx.Response(200, content=b'{"data": [{"account_id": "in1", "plat'),
            SourceUnavailable,
            "malformed JSON",
        ),
        (json_answer({"data": {"in1": 3}}), SourceUnavailable, "unexpected payload shape"),
        (
            json_answer({"data": [{**account("in1"), "followers": "many"}]}),
            SourceUnavailable,
            "unexpected payload shape",
        ),
        (
            json_answer({"data": [{**account("in1"), "verified": 1}]}),
            SourceUnavailable,
            "unexpected payload shape",
        ),
    ],
)
async def test_a_failing_upstream_is_a_source_error_naming_social(
    answer: httpx.Response | Exception, error: type[SourceError], message: str
) -> None:
    with pytest.raises(error) as caught:
        await social(Upstream(answer)).accounts(["in1"])
    assert caught.value.extensions["source"] == "social"
    assert message in caught.value.message


@pytest.mark.parametrize(
    "point",
    [
        {**metric("in1", "2026-03-01"), "impressions": True},
        {**metric("in1", "2026-03-01"), "impressions": "5"},
        {**metric("in1", "2026-03-01"), "spend_cents": 19.99},
        {k: v for k, v in metric("in1", "2026-03-01").items() if k != "reach"},
        {**metric("in1", "2026-03-01"), "date": 20260301},
        {**metric("in1", "2026-03-01"), "date": "the first of March"},
        {**metric("in1", "2026-03-01"), "account_id": None},
        ["in1", "2026-03-01"],
    ],
)
async def test_a_metric_point_of_the_wrong_shape_is_a_source_error(point: Any) -> None:
    upstream = Upstream(json_answer({"data": [metric("in1", "2026-03-02"), point]}))
    with pytest.raises(SourceUnavailable) as caught:
        await social(upstream).daily_metrics(["in1"], date(2026, 3, 1), date(2026, 3, 2))
    assert "unexpected payload shape" in caught.value.message


async def test_cached_metric_rows_read_back_as_the_same_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = [metric("in1", "2026-03-01"), metric("in1", "2026-03-02")]
    upstream = Upstream(json_answer({"data": points}))
    clock = FakeClock()
    source = social(upstream, clock=clock, cache=MemoryCache(clock=clock))
    window = (date(2026, 3, 1), date(2026, 3, 2))
    first = await source.daily_metrics(["in1"], *window)
    # Rows read back as new lists (as from Redis) are decoded, not found in the memo.
    monkeypatch.setattr(social_module, "_DECODED", IdentityMemo(8))
    again = await source.daily_metrics(["in1"], *window)
    assert upstream.calls == 1
    assert again == first
    assert again["in1"][1] == MetricRecord(
        "in1", date(2026, 3, 2), 10, 11, 12, 13, 14, 15, 16, 7, 2, 1999
    )
