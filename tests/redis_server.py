"""A `redis-server` of a test's own on a free loopback port, to stop and start again."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

START_TIMEOUT_S = 10.0


class RedisServer:
    """One `redis-server` process bound to 127.0.0.1; `stop()` ends it by its pid (with
    `keep_data`, after a `SAVE`, so that `start()` finds the entries again)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self, *, keep_data: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if keep_data:
            client = Redis(host="127.0.0.1", port=self.port)
            client.save()
            client.close()
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _answers(self) -> bool:
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            return bool(client.ping())
        except RedisConnectionError:
            return False
        finally:
            client.close()


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A started server, ended by its pid on the way out; the test is skipped without
    `redis-server` on the PATH."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
