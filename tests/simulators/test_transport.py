"""In-process simulators: one transport reaches each simulator by its host name."""

from __future__ import annotations

import httpx
import pytest

from hub.simulators import SIMULATOR_NAMES, SimulatorConfig, build_in_process_simulators

HEADERS = {"Authorization": f"Bearer {SimulatorConfig().api_key}"}


async def test_each_base_url_reaches_its_own_simulator() -> None:
    simulators = build_in_process_simulators({name: SimulatorConfig() for name in SIMULATOR_NAMES})
    assert simulators.urls == {
        "crm": "http://crm.simulator",
        "social": "http://social.simulator",
        "discovery": "http://discovery.simulator",
    }
    async with httpx.AsyncClient(transport=simulators.transport, headers=HEADERS) as client:
        contact = await client.get(simulators.urls["crm"] + "/v1/contacts/crm-acme-00009")
        missing = await client.get(simulators.urls["social"] + "/v1/contacts/crm-acme-00009")
        stats = await client.get(simulators.urls["crm"] + "/_control/stats")
        with pytest.raises(httpx.ConnectError, match=r"billing\.simulator"):
            await client.get("http://billing.simulator/v1/invoices")
    assert contact.json()["contact_id"] == "crm-acme-00009"
    assert missing.status_code == 404
    assert stats.json()["calls"] == {"/v1/contacts/crm-acme-00009": 1}
    assert simulators.apps["crm"].state.faults.calls["/v1/contacts/crm-acme-00009"] == 1


def test_an_unknown_simulator_name_is_refused() -> None:
    with pytest.raises(ValueError, match="billing"):
        build_in_process_simulators({"billing": SimulatorConfig()})
