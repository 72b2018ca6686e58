"""Warm throughput of `hub serve` against a bare strawberry server answering the same from
memory, under the same closed-loop wrk load, in interleaved rounds (prints figures).

    hub serve --demo (one worker, fresh SQLite file, a budget tier that never throttles)
      -> warm-up: every answer a 200 without `errors`; the answers saved
    bench/bare_strawberry.py (the saved answers as objects, parser + validation caches)
      -> the same answers, checked equal
    per query, rounds: wrk -> hub, wrk -> strawberry, wrk -> hub, ...
      -> req/s, p50/p99, non-2xx and `errors` answers, the hub's resident memory

Servers on one core and wrk on another where the machine has two. Needs `wrk`
(`apt-get install wrk`). `--help` lists the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from dashboard import DASHBOARD, WINDOW, prepare
from unthrottled import unthrottled_policies

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LIST_QUERY = (
    "{ influencers(first: 50) { edges { node { id handle displayName country categories "
    'metrics(from: "2026-10-05", to: "2026-10-21", granularity: WEEK) '
    "{ date impressions engagementRate } } } } }"
)
CLIENT_ID = "bench-throughput"
"""A budget no load of this bench can empty: the list query costs about 1,400 points."""
SOURCE_TTL_S = 86_400
"""Source caches stay warm for the whole run (the defaults, 300 s, would expire mid-run)."""
KEPT_ANSWERS_TTL_S = 3_600
WARMUP_REQUESTS = 5
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
WRK_TIMEOUT_S = 10
"""wrk's own timeout for one request: an answer slower than this counts as a socket error."""
WRK_LUA = """
-- One request, repeated; counts answers that are not 2xx or that carry GraphQL errors.
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"

local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  errors = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if string.find(body, '"errors"', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local non2xx, errors = 0, 0
  for _, thread in ipairs(threads) do
    non2xx = non2xx + thread:get("non2xx")
    errors = errors + thread:get("errors")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d errors=%d socket=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    non2xx, errors, e.connect + e.read + e.write + e.timeout))
end
"""
WRK_LINE = re.compile(
    r"BENCH requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) "
    r"non2xx=(\d+) errors=(\d+) socket=(\d+)"
)


class BenchError(Exception):
    """The bench cannot measure; the message is the one line it prints."""


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    body: dict[str, Any]
    token: str


@dataclass(slots=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def is_running(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        """Resident memory (VmRSS) of the server's process."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else float("nan")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk run against one server."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int
    socket_errors: int

    @property
    def per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def is_valid(self) -> bool:
        return self.requests > 0 and not (self.non2xx or self.errors or self.socket_errors)

    def flaws(self) -> str:
        parts = [
            f"{count} {what}"
            for count, what in (
                (self.non2xx, "non-2xx"),
                (self.errors, "with errors"),
                (self.socket_errors, "socket errors"),
            )
            if count
        ]
        return ", ".join(parts) or "0"


@dataclass(frozen=True, slots=True)
class Round:
    query: str
    number: int
    hub: Load
    bare: Load
    hub_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.hub.per_s / self.bare.per_s if self.bare.per_s else float("nan")

    @property
    def is_valid(self) -> bool:
        return self.hub.is_valid and self.bare.is_valid


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("throughput: wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    # SIGTERM ends the bench through its `finally` blocks, so that the servers end too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return run(args, wrk)
    except BenchError as exc:
        print(f"throughput: {exc}", file=sys.stderr)
        return 1


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, wrk: str) -> int:
    server_cpus, load_cpus = split_cpus()
    queries = ["list", "dashboard"] if args.query == "both" else [args.query]
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        workdir = Path(folder)
        hub_env = hub_environment(workdir, args)
        print_header(args, wrk, hub_env, server_cpus, load_cpus)
        with contextlib.ExitStack() as stack:
            hub = stack.enter_context(
                running(
                    "hub",
                    [sys.executable, "-m", "hub", "serve", "--demo", "--port", "{port}"],
                    env=hub_env,
                    workdir=workdir,
                )
            )
            warm = warm_up_hub(hub, hub_env, workdir, queries)
            answers: dict[str, Any] = {query.name: data for query, data in warm}
            for query, _ in warm:
                if query.name == "dashboard":
                    answers["campaign_id"] = query.body["variables"]["id"]
            data_file = workdir / "answers.json"
            data_file.write_text(json.dumps(answers), encoding="utf-8")
            bare = stack.enter_context(
                running(
                    "strawberry",
                    [
                        sys.executable,
                        str(BENCH / "bare_strawberry.py"),
                        "--port",
                        "{port}",
                        "--data",
                        str(data_file),
                    ],
                    env=dict(os.environ),
                    workdir=workdir,
                )
            )
            for query, data in warm:
                check_bare(bare, query, data)
            if server_cpus:
                for server in (hub, bare):
                    pin(server.process.pid, server_cpus)
                pin(os.getpid(), load_cpus)  # wrk inherits it
            rounds = measure(args, wrk, workdir, [q for q, _ in warm], hub, bare)
    return summarize(rounds, args.rounds * len(queries))


def split_cpus() -> tuple[set[int], set[int]]:
    """(CPUs for the servers, CPUs for wrk and this script); empty when there is only one."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(), set()
    return {available[0]}, set(available[1:2])


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` on `cpus`; threads started later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def hub_environment(workdir: Path, args: argparse.Namespace) -> dict[str, str]:
    """The hub's environment: none of the caller's `HUB_*` settings, a fresh SQLite file, a
    copy of `policies/` with an unthrottled tier for the bench's client, warm source caches
    for the whole run, then `--keep-answers` and every `--hub-env`."""
    policies = unthrottled_policies(workdir, [CLIENT_ID])
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(
        {
            "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'hub.db'}",
            "HUB_POLICIES_DIR": str(policies),
            "HUB_RESPONSE_CACHE_TTL_S": str(KEPT_ANSWERS_TTL_S if args.keep_answers else 0),
            **{f"HUB_{name}_TTL_S": str(SOURCE_TTL_S) for name in ("CRM", "SOCIAL", "DISCOVERY")},
        }
    )
    for setting in args.hub_env:
        key, _, value = setting.partition("=")
        env[key] = value
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running(
    name: str, command: list[str], *, env: dict[str, str], workdir: Path
) -> Iterator[Server]:
    """Start a server on a free loopback port (`{port}` in `command`), wait until it answers
    `/healthz`, and end it by its pid on the way out, whatever happened."""
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_ready(server)
        print(f"{name}: pid {process.pid}, {server.url}", flush=True)
        yield server
    finally:
        stop(process)


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while time.monotonic() < deadline:
            if not server.is_running():
                raise BenchError(f"{server.name} exited on start:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.2)
    raise BenchError(f"{server.name} did not answer within {START_TIMEOUT_S:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def token(env: dict[str, str], workdir: Path, *, role: str, purpose: str) -> str:
    """A development token from `hub token`, under the hub's own settings."""
    command = [sys.executable, "-m", "hub", "token", "--tenant", "acme", "--role", role]
    command += ["--purpose", purpose, "--client-id", CLIENT_ID, "--ttl", str(6 * 3600)]
    done = subprocess.run(
        command,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"hub token failed: {done.stderr.strip()}")
    return done.stdout.strip()


def warm_up_hub(
    hub: Server, env: dict[str, str], workdir: Path, queries: list[str]
) -> list[tuple[Query, dict[str, Any]]]:
    """Each query of the run with its token, asked until the hub's source caches are warm
    (every answer checked), with the `data` of the hub's last answer."""
    analyst = token(env, workdir, role="analyst", purpose="analytics")
    manager = token(env, workdir, role="manager", purpose="campaign_management")
    chosen: list[Query] = []
    if "list" in queries:
        chosen.append(Query("list", {"query": LIST_QUERY}, analyst))
    if "dashboard" in queries:
        campaign_id = asyncio.run(dashboard_campaign(hub.url, manager))
        variables = {"id": campaign_id, **WINDOW}
        chosen.append(Query("dashboard", {"query": DASHBOARD, "variables": variables}, manager))
    warm: list[tuple[Query, dict[str, Any]]] = []
    with httpx.Client(base_url=hub.url, timeout=REQUEST_TIMEOUT_S) as client:
        for query in chosen:
            for _ in range(WARMUP_REQUESTS - 1):
                ask(client, hub.name, query)
            warm.append((query, ask(client, hub.name, query, show_size=True)))
    return warm


async def dashboard_campaign(url: str, manager: str) -> str:
    """The campaign `bench/dashboard.py` measures: the demo tenant's first, with 20 members."""
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        return await prepare(client, manager)


def ask(
    client: httpx.Client, name: str, query: Query, *, show_size: bool = False
) -> dict[str, Any]:
    """The `data` of one answer, which must be a 200 without `errors`."""
    answer = client.post(
        "/graphql",
        json=query.body,
        headers={"Authorization": f"Bearer {query.token}", "Accept": "application/json"},
    )
    payload = answer.json()
    if answer.status_code != 200 or "errors" in payload or not payload.get("data"):
        raise BenchError(
            f"{name} answered the {query.name} query with HTTP {answer.status_code}: "
            f"{json.dumps(payload.get('errors'))[:500]}"
        )
    data: dict[str, Any] = payload["data"]
    if show_size:
        print(f"{name}'s answer to the {query.name} query: {len(answer.content):,} bytes")
    return data


def check_bare(bare: Server, query: Query, expected: dict[str, Any]) -> None:
    with httpx.Client(base_url=bare.url, timeout=REQUEST_TIMEOUT_S) as client:
        for _ in range(WARMUP_REQUESTS - 1):
            ask(client, bare.name, query)
        if ask(client, bare.name, query, show_size=True) != expected:
            raise BenchError(f"strawberry's answer to the {query.name} query is not the hub's")


def measure(
    args: argparse.Namespace,
    wrk: str,
    workdir: Path,
    queries: list[Query],
    hub: Server,
    bare: Server,
) -> list[Round]:
    """Per query: a short warm-up of each server under load, then rounds alternating hub and
    strawberry; each row printed as soon as it is measured."""
    rounds: list[Round] = []
    print()
    print(
        "| query | round | hub req/s | hub p50 | hub p99 | strawberry req/s | strawberry p50 "
        "| strawberry p99 | hub/strawberry | hub RSS after | bad answers (hub; strawberry) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for query in queries:
        script = workdir / f"{query.name}.lua"
        script.write_text(lua_script(query), encoding="utf-8")
        for server in (hub, bare):
            warmup = drive(wrk, script, server, args.connections, min(3, args.duration_s))
            check_running(hub, bare)
            if not warmup.is_valid:
                raise BenchError(
                    f"{server.name} under load in warm-up, {query.name} query: {warmup.flaws()}"
                )
        for number in range(1, args.rounds + 1):
            hub_load = drive(wrk, script, hub, args.connections, args.duration_s)
            check_running(hub, bare)
            rss = hub.rss_mb()
            bare_load = drive(wrk, script, bare, args.connections, args.duration_s)
            check_running(hub, bare)
            done = Round(query.name, number, hub_load, bare_load, rss)
            rounds.append(done)
            print_round(done)
    return rounds


def check_running(*servers: Server) -> None:
    for server in servers:
        if not server.is_running():
            raise BenchError(
                f"{server.name} ended (exit code {server.process.returncode}) while measured:\n"
                f"{server.log_tail()}"
            )


def lua_script(query: Query) -> str:
    body = json.dumps(query.body, separators=(",", ":"))
    level = "="
    while f"]{level}]" in body:
        level += "="
    return WRK_LUA.format(body=f"[{level}[{body}]{level}]", token=query.token)


def drive(wrk: str, script: Path, server: Server, connections: int, duration_s: int) -> Load:
    """One closed-loop wrk run."""
    command = [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration_s}s"]
    command += ["--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(script), f"{server.url}/graphql"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not end within {duration_s + 60} s") from None
    found = WRK_LINE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}")
    requests, duration_us, p50, p99, non2xx, errors, socket_errors = map(int, found.groups())
    return Load(requests, duration_us / 1e6, p50 / 1000, p99 / 1000, non2xx, errors, socket_errors)


def print_header(
    args: argparse.Namespace,
    wrk: str,
    hub_env: dict[str, str],
    server_cpus: set[int],
    load_cpus: set[int],
) -> None:
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("strawberry-graphql", "graphql-core", "uvicorn", "starlette")
    )
    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"packages: {versions}; {wrk_version(wrk)}")
    if server_cpus:
        print(
            f"pinned: hub and strawberry to CPU {_cpus(server_cpus)}, "
            f"wrk and this script to CPU {_cpus(load_cpus)}"
        )
    else:
        print("pinned: nothing (one CPU available)")
    settings = {key: value for key, value in hub_env.items() if key.startswith("HUB_")}
    shown = " ".join(f"{key}={value}" for key, value in sorted(settings.items()))
    print(f"hub: hub serve --demo, one worker; {shown}")
    print(
        f"load: wrk, 1 thread, {args.connections} connections, {args.rounds} rounds of "
        f"{args.duration_s} s per server and query, interleaved (hub, strawberry, ...)"
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.machine()


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout or done.stderr).split("Copyright")[0].strip()


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def print_round(done: Round) -> None:
    verdict = (
        f"{done.hub.flaws()}; {done.bare.flaws()}"
        if done.is_valid
        else (f"**invalid**: {done.hub.flaws()}; {done.bare.flaws()}")
    )
    print(
        f"| {done.query} | {done.number} | {done.hub.per_s:,.1f} | {done.hub.p50_ms:.1f} ms "
        f"| {done.hub.p99_ms:.1f} ms | {done.bare.per_s:,.1f} | {done.bare.p50_ms:.1f} ms "
        f"| {done.bare.p99_ms:.1f} ms | {done.ratio:.3f} | {done.hub_rss_mb:.1f} MB | {verdict} |",
        flush=True,
    )


def summarize(rounds: list[Round], planned: int) -> int:
    print()
    for query in dict.fromkeys(done.query for done in rounds):
        valid = [done.ratio for done in rounds if done.query == query and done.is_valid]
        if not valid:
            print(f"{query} query: no valid round")
            continue
        met = "met" if min(valid) >= 1.0 else "not met"
        print(
            f"{query} query: hub/strawberry min {min(valid):.3f}, median "
            f"{statistics.median(valid):.3f} over {len(valid)} valid rounds; "
            f"target >= 1.0 in every round: {met}"
        )
    invalid = planned - sum(done.is_valid for done in rounds)
    if invalid:
        print(f"{invalid} of {planned} rounds invalid")
    return 1 if invalid == planned else 0


def _setting(text: str) -> str:
    key, equals, _ = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/throughput.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=_positive, default=3, help="rounds per query (3)")
    parser.add_argument("--duration-s", type=_positive, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=_positive, default=20, help="wrk connections (20)")
    parser.add_argument("--query", choices=("list", "dashboard", "both"), default="both")
    parser.add_argument(
        "--hub-env",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra setting for the hub, e.g. HUB_ENGINE_ENABLED=false (repeatable)",
    )
    parser.add_argument(
        "--keep-answers",
        action="store_true",
        help=f"let the hub keep whole answers (HUB_RESPONSE_CACHE_TTL_S={KEPT_ANSWERS_TTL_S}); "
        "off by default",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
