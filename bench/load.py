"""One `hub serve` under a steady mixed load for a minute: throughput, latency, errors and
its resident memory over the run (prints figures).

    hub serve --demo (one worker, fresh SQLite file, a budget tier that never throttles)
      -> warm-up: the dashboard and the BI pull answered without `errors`
    wrk (dashboard, manager token) ‖ wrk (BI pull: 50 influencers' weekly metrics, analyst)
      -> for `--duration-s` (60), both at once; the hub's RSS sampled every second
      -> per query: req/s, p50/p99, non-2xx and `errors` answers; RSS at 10 s and at the end

Memory is flat when the last sample is within 10 % of the one at 10 s (SPEC §9). The hub on
one core and the two wrk processes on the other where the machine has two. Needs `wrk`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from throughput import (
    BenchError,
    Load,
    Query,
    Server,
    _exit_on_signal,
    _positive,
    cpu_model,
    drive,
    hub_environment,
    lua_script,
    pin,
    running,
    split_cpus,
    warm_up_hub,
)

SAMPLE_EVERY_S = 1.0
FLAT_WITHIN = 0.10
"""The last RSS sample may be at most this much above the sample at 10 s."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print("load: wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return run(args, wrk)
    except BenchError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, wrk: str) -> int:
    server_cpus, load_cpus = split_cpus()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
        workdir = Path(folder)
        env = hub_environment(workdir, argparse.Namespace(keep_answers=False, hub_env=[]))
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; hub on {server_cpus or 'any'}")
        command = [sys.executable, "-m", "hub", "serve", "--demo", "--port", "{port}"]
        with running("hub", command, env=env, workdir=workdir) as hub:
            queries = [query for query, _ in warm_up_hub(hub, env, workdir, ["list", "dashboard"])]
            if server_cpus:
                pin(hub.process.pid, server_cpus)
                pin(os.getpid(), load_cpus)
            loads, samples = under_load(wrk, workdir, hub, queries, args)
    return report(queries, loads, samples, args.duration_s)


def under_load(
    wrk: str, workdir: Path, hub: Server, queries: list[Query], args: argparse.Namespace
) -> tuple[dict[str, Load], list[tuple[float, float]]]:
    """Both queries at once for the whole run, with (seconds, RSS MB) sampled meanwhile."""
    loads: dict[str, Load] = {}
    failures: list[BenchError] = []

    def drive_one(query: Query) -> None:
        script = workdir / f"{query.name}.lua"
        script.write_text(lua_script(query), encoding="utf-8")
        try:
            loads[query.name] = drive(wrk, script, hub, args.connections, args.duration_s)
        except BenchError as error:
            failures.append(error)

    threads = [threading.Thread(target=drive_one, args=(query,)) for query in queries]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, float]] = []
    while any(thread.is_alive() for thread in threads):
        if not hub.is_running():
            raise BenchError(f"the hub ended while measured:\n{hub.log_tail()}")
        samples.append((time.monotonic() - start, hub.rss_mb()))
        time.sleep(SAMPLE_EVERY_S)
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return loads, samples


def report(
    queries: list[Query],
    loads: dict[str, Load],
    samples: list[tuple[float, float]],
    duration_s: int,
) -> int:
    print()
    print("| query | req/s | p50 | p99 | bad answers |")
    print("| --- | --- | --- | --- | --- |")
    for query in queries:
        load = loads[query.name]
        print(
            f"| {query.name} | {load.per_s:.1f} | {load.p50_ms:.1f} ms | {load.p99_ms:.1f} ms "
            f"| {load.flaws()} |"
        )
    at_10 = next((rss for seconds, rss in samples if seconds >= 10), samples[0][1])
    last = samples[-1][1]
    growth = last / at_10 - 1
    print()
    print(
        f"RSS: {samples[0][1]:.1f} MB at start of load, {at_10:.1f} MB at 10 s, {last:.1f} MB "
        f"at {samples[-1][0]:.0f} s (+{growth:.1%}), peak {max(rss for _, rss in samples):.1f} MB"
    )
    flat = growth <= FLAT_WITHIN
    valid = all(load.is_valid for load in loads.values())
    print(f"memory flat (within {FLAT_WITHIN:.0%} of 10 s): {'yes' if flat else 'NO'}")
    with contextlib.suppress(ZeroDivisionError):
        total = sum(load.requests for load in loads.values())
        print(f"requests: {total:,} in {duration_s} s, {total / duration_s:.1f} req/s together")
    return 0 if flat and valid else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/load.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration-s", type=_positive, default=60, help="seconds (60)")
    parser.add_argument(
        "--connections", type=_positive, default=10, help="wrk connections per query (10)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
