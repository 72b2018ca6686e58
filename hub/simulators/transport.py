"""In-process simulators: one httpx transport that routes each host to its simulator app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette

from hub.simulators.config import SimulatorConfig
from hub.simulators.serving import FACTORIES


class InProcessTransport(httpx.AsyncBaseTransport):
    """Sends a request for `http://<host>/...` to the ASGI app registered under that host.

    httpx does not enforce timeouts on in-process apps; callers that need them (slow mode)
    must bound the call themselves, e.g. with `asyncio.timeout`.
    """

    def __init__(self, apps_by_host: Mapping[str, Starlette]) -> None:
        self._transports = {
            host: httpx.ASGITransport(app=app) for host, app in apps_by_host.items()
        }

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"no simulator at {request.url.host}", request=request)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()


@dataclass(frozen=True, slots=True)
class InProcessSimulators:
    """Base URLs (`http://<name>.simulator`) served by `transport`; `apps` for direct access."""

    urls: dict[str, str]
    apps: dict[str, Starlette]
    transport: InProcessTransport


def build_in_process_simulators(
    config_by_name: Mapping[str, SimulatorConfig],
) -> InProcessSimulators:
    """The named simulators without sockets: for tests that pass a transport to the hub."""
    unknown = set(config_by_name) - set(FACTORIES)
    if unknown:
        raise ValueError(f"unknown simulators: {', '.join(sorted(unknown))}")
    apps = {name: FACTORIES[name](config) for name, config in config_by_name.items()}
    hosts = {f"{name}.simulator": app for name, app in apps.items()}
    return InProcessSimulators(
        urls={name: f"http://{name}.simulator" for name in apps},
        apps=apps,
        transport=InProcessTransport(hosts),
    )
