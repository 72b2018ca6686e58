"""start_simulators: the three simulators under uvicorn on loopback ports, in the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette

from hub.simulators.config import SimulatorConfig
from hub.simulators.crm import create_crm_app
from hub.simulators.discovery import create_discovery_app
from hub.simulators.social import create_social_app

FACTORIES: Mapping[str, Callable[[SimulatorConfig], Starlette]] = {
    "crm": create_crm_app,
    "social": create_social_app,
    "discovery": create_discovery_app,
}
SIMULATOR_NAMES = tuple(FACTORIES)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class _EmbeddedServer(uvicorn.Server):
    """A server that leaves signal handling to the process hosting it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(slots=True)
class RunningSimulators:
    """Base URLs by simulator name (`http://127.0.0.1:<port>`); `stop()` shuts them down."""

    urls: dict[str, str]
    apps: dict[str, Starlette] = field(default_factory=dict)
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        for app in self.apps.values():
            deliveries = getattr(app.state, "deliveries", None)
            if deliveries is not None:
                await deliveries.stop()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def start_simulators(
    config_by_name: Mapping[str, SimulatorConfig],
    *,
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
) -> RunningSimulators:
    """Serve each named simulator (`crm`, `social`, `discovery`) until `stop()` is awaited.

    A port of 0 or an absent port means a free one. Only loopback hosts are accepted: the
    simulators have no real security and must not be reachable from other machines.
    """
    unknown = set(config_by_name) - set(FACTORIES)
    if unknown:
        raise ValueError(f"unknown simulators: {', '.join(sorted(unknown))}")
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"simulators bind to loopback only, not {host}")
    running = RunningSimulators(urls={})
    try:
        for name, config in config_by_name.items():
            sock = _bind(host, (ports or {}).get(name, 0))
            app = FACTORIES[name](config)
            running.apps[name] = app
            server = _EmbeddedServer(
                uvicorn.Config(
                    app,
                    lifespan="off",
                    log_config=None,
                    # The access logger is the process's: False would switch off the hub's
                    # own access log (HUB_ACCESS_LOG) in the demo; True leaves it as set.
                    access_log=True,
                    ws="none",
                    timeout_graceful_shutdown=1,
                )
            )
            running._servers.append(server)
            task = asyncio.create_task(server.serve(sockets=[sock]), name=f"simulator-{name}")
            running._tasks.append(task)
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError(f"simulator {name} stopped while starting")
                await asyncio.sleep(0.01)
            address, port = sock.getsockname()[:2]
            shown = f"[{address}]" if ":" in address else address
            running.urls[name] = f"http://{shown}:{port}"
    except BaseException:
        await running.stop()
        raise
    return running


@contextlib.contextmanager
def simulators_on_a_thread(
    config_by_name: Mapping[str, SimulatorConfig],
) -> Iterator[dict[str, str]]:
    """`start_simulators` on an event loop of its own thread, for a caller with no running
    loop (a command under test, a benchmark): their URLs, until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="simulators", daemon=True)
    thread.start()
    try:
        running = asyncio.run_coroutine_threadsafe(start_simulators(config_by_name), loop).result(
            timeout=30
        )
        try:
            yield dict(running.urls)
        finally:
            asyncio.run_coroutine_threadsafe(running.stop(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, a reused connection waits on Nagle (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
