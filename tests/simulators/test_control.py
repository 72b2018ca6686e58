"""The `/_control/` routes: switching faults at run time, counting calls, resetting."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hub.simulators import SimulatorConfig, create_crm_app
from tests.simulators.conftest import OpenClient


async def test_stats_count_calls_per_path_including_refused_ones(open_client: OpenClient) -> None:
    app = create_crm_app(SimulatorConfig())
    client = open_client(app)
    await client.get("/v1/contacts", params={"ids": "crm-acme-00001"})
    await client.get("/v1/contacts", params={"limit": "3"})
    await client.delete("/v1/contacts/crm-acme-00002")
    await open_client(app, api_key="wrong").get("/v1/contacts/crm-acme-00004")
    stats = (await client.get("/_control/stats")).json()
    assert stats == {
        "calls": {
            "/v1/contacts": 2,
            "/v1/contacts/crm-acme-00002": 1,
            "/v1/contacts/crm-acme-00004": 1,
        },
        "total": 4,
    }


async def test_the_fault_mode_switches_at_run_time_and_reset_clears_it(
    open_client: OpenClient,
) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 200
    switched = await client.post("/_control/fault", json={"mode": "5xx"})
    assert switched.json()["mode"] == "5xx"
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 500
    assert (await client.get("/_control/fault")).json()["mode"] == "5xx"
    assert (await client.get("/_control/stats")).json()["total"] == 2
    reset = await client.post("/_control/reset")
    assert reset.json()["mode"] == "none"
    assert (await client.get("/_control/stats")).json() == {"calls": {}, "total": 0}
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 200


async def test_control_routes_work_while_the_simulator_is_down(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig(fault="down")), api_key=None)
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 503
    assert (await client.get("/_control/stats")).json()["total"] == 1
    assert (await client.post("/_control/fault", json={"mode": "none"})).status_code == 200
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 401


async def test_latency_and_error_rate_change_at_run_time(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    await client.post("/_control/fault", json={"latency_ms": [60, 60]})
    started = time.perf_counter()
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 200
    assert time.perf_counter() - started >= 0.06
    await client.post("/_control/fault", json={"latency_ms": [0, 0], "error_rate": 1.0})
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code >= 500
    described = (await client.post("/_control/reset")).json()
    assert described["latency_ms"] == [0, 0]
    assert described["error_rate"] == 0.0


async def test_reset_restores_the_configured_latency_and_refills_the_quota(
    open_client: OpenClient,
) -> None:
    config = SimulatorConfig(latency_ms=(1, 2), quota_per_s=1.0)
    client = open_client(create_crm_app(config))
    await client.post("/_control/fault", json={"latency_ms": [5, 9]})
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 200
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 429
    described = (await client.post("/_control/reset")).json()
    assert described["latency_ms"] == [1, 2]
    assert (await client.get("/v1/contacts/crm-acme-00001")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "sideways"},
        {"latency_ms": [5]},
        {"latency_ms": [9, 5]},
        {"error_rate": 2},
        {"error_rate": True},
        {"slow_s": -1},
        {"retry_after_s": 1.5},
        {"retry_after_s": -1},
        {"colour": "red"},
        ["mode", "5xx"],
    ],
)
async def test_a_bad_fault_change_is_refused_and_changes_nothing(
    body: Any, open_client: OpenClient
) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    before = (await client.get("/_control/fault")).json()
    response = await client.post(
        "/_control/fault", json={"mode": "5xx", **body} if isinstance(body, dict) else body
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert (await client.get("/_control/fault")).json() == before


async def test_the_retry_after_of_429_mode_can_be_set(open_client: OpenClient) -> None:
    client = open_client(create_crm_app(SimulatorConfig()))
    await client.post("/_control/fault", json={"mode": "429", "retry_after_s": 7})
    response = await client.get("/v1/contacts/crm-acme-00001")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
