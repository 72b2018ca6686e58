"""Fixtures that start the real hub under uvicorn and run the repository's Node tools."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_GRACE_S = 10.0
STDERR_TAIL_CHARS = 8000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[-STDERR_TAIL_CHARS:] or "(empty)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, stderr_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"hub serve exited with code {process.returncode} before /healthz answered; "
                f"its stderr:\n{_tail(stderr_path)}",
                pytrace=False,
            )
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=1.0)
        except httpx.TransportError as error:
            last_problem = repr(error)
        else:
            if response.status_code == 200:
                return
            last_problem = f"HTTP {response.status_code}: {response.text[:200]}"
        time.sleep(0.2)
    pytest.fail(
        f"hub serve did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s ({last_problem}); "
        f"its stderr:\n{_tail(stderr_path)}",
        pytrace=False,
    )


@contextlib.contextmanager
def running_hub(
    workdir: Path, *, args: Sequence[str] = ("--demo",), env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`hub serve --demo` (or `hub serve` with `args`) on a free loopback port with a fresh
    SQLite file in `workdir`, `env` added to its environment; stopped (SIGTERM, then kill) on
    exit. Its output is in `workdir`'s stdout.log and stderr.log."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'hub.db'}",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        *(sys.executable, "-m", "hub", "serve"),
        *("--host", "127.0.0.1", "--port", str(port), *args),
    ]
    stdout_path = workdir / "stdout.log"
    stderr_path = workdir / "stderr.log"
    # Files, not pipes: a pipe nobody reads fills up and blocks the server.
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=stdout, stderr=stderr
        )
        try:
            _wait_until_healthy(process, base_url, stderr_path)
            yield process, base_url
        finally:
            _stop(process)


def _three_free_ports() -> int:
    """A port whose next two are free too (the simulators take three in a row)."""
    for _ in range(50):
        first = _free_port()
        try:
            with contextlib.ExitStack() as stack:
                for port in (first + 1, first + 2):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no three free ports in a row")


@contextlib.contextmanager
def simulators(workdir: Path) -> Iterator[dict[str, str]]:
    port = _three_free_ports()
    log = workdir / "simulators.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "simulate", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            urls = {
                name: f"http://127.0.0.1:{port + offset}"
                for offset, name in enumerate(("crm", "social", "discovery"))
            }
            deadline = time.monotonic() + 30
            while True:
                try:
                    if all(
                        httpx.get(f"{url}/_control/stats").status_code == 200
                        for url in urls.values()
                    ):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"the simulators did not start:\n{_tail(log)}", pytrace=False)
                time.sleep(0.2)
            yield urls
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One hub for the session's end-to-end tests."""
    with running_hub(tmp_path_factory.mktemp("live_server")) as (_process, base_url):
        yield base_url


class NodeRunner:
    """Runs a Node script with the repository's node_modules and returns its output."""

    def __init__(self, node: str) -> None:
        self.node = node

    def __call__(
        self, script: Path, *args: str, timeout_s: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        # ESM imports resolve from the script's folder upwards; NODE_PATH covers require().
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        return subprocess.run(
            [self.node, str(script), *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


@pytest.fixture(scope="session")
def run_node() -> NodeRunner:
    """Return a NodeRunner, skipping when Node or the repository's node_modules is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH (Node 20 runs the end-to-end tools)")
    if not NODE_MODULES.is_dir():
        pytest.skip(f"{NODE_MODULES} is missing: run `npm ci` in {REPO_ROOT}")
    return NodeRunner(node)
