"""Flat-file exports of 10,000 and 100,000 rows: rows per second and the hub's resident
memory while it streams them (prints figures).

    for each size: a SQLite store seeded with that many influencers (`hub seed`)
      -> `hub serve --demo` on it (one worker; the bench's client on a tier without limits)
      -> GET /export/InfluencerContacts.csv (manager token, purpose analytics: each
         influencer's contacts decided and audited per value), read to the end
      -> rows, seconds, rows/s; the hub's RSS before the export and its peak during it
         (sampled every 0.1 s)

Each export runs twice on the same hub. Flat memory means the peak does not grow with the
rows: the second export's peak is the first's, and the 100,000-row peak is close to the
10,000-row one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from throughput import (
    COMMAND_TIMEOUT_S,
    BenchError,
    Server,
    cpu_model,
    hub_environment,
    running,
    token,
)

SIZES = (10_000, 100_000)
SEED = (sys.executable, "-m", "hub", "seed")
SAMPLE_EVERY_S = 0.1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/export.py", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}")
    print()
    print("| rows | seconds | rows/s | file | hub RSS before | hub RSS peak |")
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        for size in args.sizes:
            print(measure(size), flush=True)
    except BenchError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


def measure(size: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        workdir = Path(folder)
        env = hub_environment(workdir, argparse.Namespace(keep_answers=False, hub_env=[]))
        seeded = subprocess.run(
            [*SEED, "--influencers", str(size), "--campaigns", "30", "--tenants", "1"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S * 10,
            check=False,
        )
        if seeded.returncode != 0:
            raise BenchError(f"hub seed failed: {seeded.stderr.strip()[-500:]}")
        command = [sys.executable, "-m", "hub", "serve", "--demo", "--port", "{port}"]
        with running(f"hub-{size}", command, env=env, workdir=workdir) as hub:
            reporter = token(env, workdir, role="manager", purpose="analytics")
            # Twice: memory that grows with the rows would grow again the second time.
            return "\n".join(export(hub, reporter, size) for _ in range(2))


def export(hub: Server, reporter: str, size: int) -> str:
    before = hub.rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], hub.rss_mb())
            time.sleep(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    lines = 0
    size_bytes = 0
    started = time.perf_counter()
    try:
        with (
            httpx.Client(base_url=hub.url, timeout=600) as client,
            client.stream(
                "GET",
                "/export/InfluencerContacts.csv",
                headers={"Authorization": f"Bearer {reporter}"},
            ) as response,
        ):
            if response.status_code != 200:
                raise BenchError(f"the export answered {response.status_code}: {response.read()!r}")
            for line in response.iter_lines():
                lines += 1
                size_bytes += len(line) + 1
                if line.startswith("# export stopped"):
                    raise BenchError(line)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    rows = lines - 1
    if rows != size:
        raise BenchError(f"{rows} rows exported of {size}")
    return (
        f"| {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | {size_bytes / 1e6:.1f} MB "
        f"| {before:.1f} MB | {peak[0]:.1f} MB |"
    )


if __name__ == "__main__":
    sys.exit(main())
