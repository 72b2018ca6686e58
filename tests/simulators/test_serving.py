"""start_simulators: the three apps served over loopback HTTP until stopped."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from hub.simulators import SIMULATOR_NAMES, SimulatorConfig, start_simulators
from hub.store.seed import SeedPlan, influencer_rows

HEADERS = {"Authorization": f"Bearer {SimulatorConfig().api_key}"}


async def test_the_simulators_serve_over_loopback_http_and_stop() -> None:
    row, accounts = next(iter(influencer_rows(SeedPlan(influencers=1, seed=7))))
    running = await start_simulators({name: SimulatorConfig() for name in SIMULATOR_NAMES})
    try:
        assert sorted(running.urls) == ["crm", "discovery", "social"]
        assert len(set(running.urls.values())) == 3
        assert all(url.startswith("http://127.0.0.1:") for url in running.urls.values())
        async with httpx.AsyncClient(headers=HEADERS) as client:
            contact = await client.get(running.urls["crm"] + "/v1/contacts/crm-acme-00001")
            account = await client.get(
                running.urls["social"] + "/v2/accounts",
                params={"ids": accounts[0]["external_id"]},
            )
            profile = await client.post(
                running.urls["discovery"] + "/graphql",
                json={"query": f'{{ profiles(ids: ["{row["id"]}"]) {{ handle }} }}'},
            )
        assert contact.json()["contact_id"] == "crm-acme-00001"
        assert account.json()["data"][0]["username"] == accounts[0]["username"]
        assert profile.json() == {"data": {"profiles": [{"handle": row["handle"]}]}}
    finally:
        await running.stop()
    async with httpx.AsyncClient() as client:
        for url in running.urls.values():
            with pytest.raises(httpx.ConnectError):
                await client.get(url + "/_control/stats")


async def test_a_given_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = await start_simulators({"crm": SimulatorConfig()}, ports={"crm": port})
    try:
        assert running.urls == {"crm": f"http://127.0.0.1:{port}"}
        async with httpx.AsyncClient() as client:
            stats = await client.get(f"http://127.0.0.1:{port}/_control/stats")
        assert stats.json() == {"calls": {}, "total": 0}
    finally:
        await running.stop()


async def test_a_port_in_use_fails_the_start_and_leaves_nothing_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await start_simulators(
                {"crm": SimulatorConfig(), "social": SimulatorConfig()}, ports={"social": port}
            )
    names = [task.get_name() for task in asyncio.all_tasks()]
    assert not [name for name in names if name.startswith("simulator-")]


@pytest.mark.parametrize(
    ("names", "host", "message"),
    [(["crm"], "0.0.0.0", "loopback"), (["crm", "billing"], "127.0.0.1", "billing")],
)
async def test_a_public_host_or_an_unknown_simulator_is_refused(
    names: list[str], host: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await start_simulators({name: SimulatorConfig() for name in names}, host=host)
