"""The fault layer: auth, quota, random errors and each fault mode, on every simulator."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from hub.simulators import (
    SimulatorConfig,
    create_crm_app,
    create_discovery_app,
    create_social_app,
)
from hub.simulators.shell import build_simulator_app
from hub.store.seed import SeedPlan, influencer_rows
from tests.simulators.conftest import OpenClient

_ROW, _ACCOUNTS = next(iter(influencer_rows(SeedPlan(influencers=1, seed=7))))
CALLS: dict[str, tuple[Callable[[SimulatorConfig], Starlette], str, str, dict[str, Any]]] = {
    "crm": (create_crm_app, "GET", "/v1/contacts", {"params": {"ids": "crm-acme-00001"}}),
    "social": (
        create_social_app,
        "GET",
        "/v2/accounts",
        {"params": {"ids": _ACCOUNTS[0]["external_id"]}},
    ),
    "discovery": (
        create_discovery_app,
        "POST",
        "/graphql",
        {"json": {"query": f'{{ profiles(ids: ["{_ROW["id"]}"]) {{ handle }} }}'}},
    ),
}


async def _call(
    name: str, open_client: OpenClient, config: SimulatorConfig, **client_options: Any
) -> tuple[httpx.AsyncClient, httpx.Response]:
    factory, method, path, options = CALLS[name]
    client = open_client(factory(config), **client_options)
    return client, await client.request(method, path, **options)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_a_healthy_simulator_answers_json(name: str, open_client: OpenClient) -> None:
    _client, response = await _call(name, open_client, SimulatorConfig())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "wrong"}, {"Authorization": "Basic x"}],
)
async def test_a_call_without_the_right_key_is_refused_with_401(
    name: str, headers: dict[str, str], open_client: OpenClient
) -> None:
    factory, method, path, options = CALLS[name]
    client = open_client(factory(SimulatorConfig()), api_key=None)
    response = await client.request(method, path, headers=headers, **options)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_key_is_also_accepted_in_x_api_key(open_client: OpenClient) -> None:
    config = SimulatorConfig(api_key="other-key")
    client = open_client(create_crm_app(config), api_key=None)
    response = await client.get("/v1/contacts/crm-acme-00001", headers={"X-Api-Key": "other-key"})
    assert response.status_code == 200
    assert response.json()["contact_id"] == "crm-acme-00001"


@pytest.mark.parametrize(("quota_per_s", "retry_after"), [(2.0, "1"), (0.5, "2")])
async def test_calls_over_the_quota_get_429_with_retry_after(
    quota_per_s: float, retry_after: str, open_client: OpenClient
) -> None:
    client = open_client(create_crm_app(SimulatorConfig(quota_per_s=quota_per_s)))
    statuses = []
    for _ in range(3):
        response = await client.get("/v1/contacts/crm-acme-00001")
        statuses.append(response.status_code)
    allowed = int(max(1.0, quota_per_s))
    assert statuses == [200] * allowed + [429] * (3 - allowed)
    assert response.headers["retry-after"] == retry_after
    assert response.json()["error"]["code"] == "rate_limited"


async def test_a_refused_key_does_not_spend_the_quota(open_client: OpenClient) -> None:
    app = create_crm_app(SimulatorConfig(quota_per_s=1.0))
    stranger = open_client(app, api_key="wrong")
    assert (await stranger.get("/v1/contacts/crm-acme-00001")).status_code == 401
    owner = open_client(app)
    assert (await owner.get("/v1/contacts/crm-acme-00001")).status_code == 200


async def test_an_error_rate_of_one_fails_every_call_with_a_5xx(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig(error_rate=1.0)))
    statuses = {(await client.get("/v1/contacts/crm-acme-00001")).status_code for _ in range(20)}
    assert statuses <= {500, 502, 503}
    assert len(statuses) > 1


async def test_an_error_rate_of_a_half_fails_some_calls(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig(error_rate=0.5)))
    statuses = [(await client.get("/v1/contacts/crm-acme-00001")).status_code for _ in range(40)]
    assert 5 <= statuses.count(200) <= 35
    assert all(status in {200, 500, 502, 503} for status in statuses)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    ("mode", "status", "retry_after"),
    [("down", 503, None), ("5xx", 500, None), ("429", 429, "1")],
)
async def test_a_failing_mode_refuses_every_call(
    name: str, mode: Any, status: int, retry_after: str | None, open_client: OpenClient
) -> None:
    client, first = await _call(name, open_client, SimulatorConfig(fault=mode))
    _factory, method, path, options = CALLS[name]
    second = await client.request(method, path, **options)
    assert [first.status_code, second.status_code] == [status, status]
    assert first.headers.get("retry-after") == retry_after
    assert first.json()["error"]["message"]


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_malformed_mode_answers_200_with_invalid_json(
    name: str, open_client: OpenClient
) -> None:
    _client, response = await _call(name, open_client, SimulatorConfig(fault="malformed"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_truncated_mode_cuts_the_real_answer_in_half(
    name: str, open_client: OpenClient
) -> None:
    _client, whole = await _call(name, open_client, SimulatorConfig())
    _client, cut = await _call(name, open_client, SimulatorConfig(fault="truncated"))
    assert cut.status_code == 200
    assert cut.headers["content-type"] == "application/json"
    assert cut.headers["content-length"] == str(len(whole.content) // 2)
    assert cut.content == whole.content[: len(whole.content) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)


async def test_truncated_mode_cuts_a_streamed_answer_too(open_client: OpenClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"items": ', b"[1, 2, 3, ", b"4, 5, 6]}"):
            yield part

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="application/json")

    app = build_simulator_app(SimulatorConfig(fault="truncated"), [Route("/stream", stream)])
    response = await open_client(app).get("/stream")
    assert response.status_code == 200
    assert response.content == b'{"items": [1, '
    assert response.headers["content-length"] == "14"


async def test_slow_mode_answers_correctly_after_the_delay(open_client: OpenClient) -> None:
    _client, whole = await _call("crm", open_client, SimulatorConfig())
    started = time.perf_counter()
    _client, slow = await _call("crm", open_client, SimulatorConfig(fault="slow", slow_s=0.3))
    assert time.perf_counter() - started >= 0.3
    assert slow.status_code == 200
    assert slow.json() == whole.json()


async def test_an_unknown_path_is_a_404_in_the_vendor_shape(open_client: OpenClient) -> None:
    client = open_client(create_social_app(SimulatorConfig()))
    response = await client.get("/v9/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "options",
    [
        {"latency_ms": (10, 5)},
        {"latency_ms": (-1, 5)},
        {"error_rate": 1.5},
        {"quota_per_s": 0.0},
        {"fault": "sideways"},
        {"api_key": ""},
    ],
)
def test_a_config_out_of_range_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        SimulatorConfig(**options)
