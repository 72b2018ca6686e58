"""The discovery adapter against scripted upstreams: one GraphQL query per batch."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from hub.errors import SourceError, SourceTimeout, SourceUnavailable
from hub.sizes import estimate_bytes
from hub.sources.discovery import DiscoverySource, GenderSplitRecord, ShareRecord
from hub.sources.memory_cache import MemoryCache
from tests.sources.fakes import FakeClock
from tests.sources.upstream import Upstream, json_answer, make_client


def profile(influencer_id: str) -> dict[str, Any]:
    return {
        "influencerId": influencer_id,
        "handle": "ana",
        "bio": "Food and travel.",
        "language": "pl",
        "engagementRate": 0.031,
        "audience": {
            "countries": [{"code": "PL", "share": 0.6}, {"code": "DE", "share": 0.4}],
            "ageBands": [{"band": "18-24", "share": 1.0}],
            "genderSplit": {"female": 0.5, "male": 0.4, "other": 0.1},
            "interests": ["food", "travel"],
        },
    }


def discovery(upstream: Upstream) -> DiscoverySource:
    return DiscoverySource(make_client(upstream, name="discovery"))


async def test_profiles_are_one_query_with_every_id() -> None:
    upstream = Upstream(json_answer({"data": {"profiles": [profile("inf_1"), None]}}))
    found = await discovery(upstream).profiles(["inf_1", "inf_2"])
    assert list(found) == ["inf_1"]
    audience = found["inf_1"].audience
    assert audience.countries == (ShareRecord("PL", 0.6), ShareRecord("DE", 0.4))
    assert audience.gender_split == GenderSplitRecord(0.5, 0.4, 0.1)
    assert audience.interests == ("food", "travel")
    sent = json.loads(upstream.requests[0].content)
    assert sent["variables"] == {"ids": ["inf_1", "inf_2"]}
    assert upstream.calls == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.ReadTimeout("slow"), SourceTimeout),
        (json_answer({}, 503), SourceUnavailable),
        (json_answer({}, 429, **{"Retry-After": "1"}), SourceUnavailable),
        (httpx.Response(200, content=b"nope"), SourceUnavailable),
        (httpx.Response(200, content=b'{"data": {"profiles": [{"influ'), SourceUnavailable),
        (
            json_answer({"data": {"profiles": None}, "errors": [{"message": "x"}]}),
            SourceUnavailable,
        ),
        (
            json_answer({"data": {"profiles": [{**profile("inf_1"), "audience": 3}]}}),
            SourceUnavailable,
        ),
    ],
)
async def test_a_failing_discovery_service_is_a_source_error_naming_it(
    answer: httpx.Response | Exception, error: type[SourceError]
) -> None:
    with pytest.raises(error) as caught:
        await discovery(Upstream(answer)).profiles(["inf_1"])
    assert caught.value.extensions["source"] == "discovery"


async def test_a_cached_profile_is_read_once_while_the_cache_holds_it() -> None:
    upstream = Upstream(json_answer({"data": {"profiles": [profile("inf_1")]}}))
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    source = DiscoverySource(make_client(upstream, name="discovery", clock=clock, cache=cache))
    first = await source.profiles(["inf_1"])
    again = await source.profiles(["inf_1"])
    assert upstream.calls == 1
    assert again["inf_1"] is first["inf_1"]  # the same record, not read from the JSON again
    assert again["inf_1"].audience.interests == ("food", "travel")
    # The record is charged to the cache entry that holds its JSON.
    (slot,) = cache.entries._slots.values()
    assert slot.account.nbytes > estimate_bytes(slot.entry.value) + estimate_bytes(first["inf_1"])
