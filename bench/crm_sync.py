"""CRM sync: records per second of a full import, of incremental runs, and the write-backs it
sends (prints figures).

    a SQLite store seeded as the demo (`hub seed`): acme holds its seeded contacts, each
    linked to a CRM record
      -> the CRM simulator on a free port, listing --records records for acme
      -> `hub sync crm --full --tenant acme`: every record imported or matched; the seeded
         people's hub-owned fields differ at the CRM and are written back
      -> `hub sync crm --tenant acme` with nothing changed at the CRM since (what it wrote
         back comes round once more, and both sides agree)
      -> --changed records edited at the CRM, then `hub sync crm --tenant acme` again

Each run is a `hub` process of its own: the figures are its wall time, start-up and
migrations check included (the `--records 0` row is that floor).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from throughput import COMMAND_TIMEOUT_S, BenchError, cpu_model

from hub.simulators import SimulatorConfig
from hub.simulators.config import DEFAULT_API_KEY
from hub.simulators.serving import simulators_on_a_thread

ROOT = Path(__file__).resolve().parent.parent
HUB = (sys.executable, "-m", "hub")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/crm_sync.py", description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[0, 1_000, 10_000])
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}")
    print()
    print("| CRM records | run | listed | imported | updated | written back | s | records/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for records in args.records:
            for row in measure(records, args.changed):
                print(row, flush=True)
    except BenchError as exc:
        print(f"crm_sync: {exc}", file=sys.stderr)
        return 1
    return 0


def measure(records: int, changed: int) -> list[str]:
    rows = []
    config = {"crm": SimulatorConfig(crm_listed_per_tenant=records)}
    with tempfile.TemporaryDirectory() as folder, simulators_on_a_thread(config) as urls:
        url = urls["crm"]
        env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
        env.update(
            {
                "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{Path(folder) / 'hub.db'}",
                "HUB_POLICIES_DIR": str(ROOT / "policies"),
                "HUB_CRM_URL": url,
                "HUB_LOG_FORMAT": "console",
            }
        )
        run([*HUB, "seed", "--influencers", "150", "--campaigns", "18", "--tenants", "3"], env)
        for name, command in (
            ("full", ["--full"]),
            ("nothing changed", []),
            (f"{changed} changed", []),
        ):
            if name.endswith(" changed") and name != "nothing changed":
                edit(url, min(changed, records))
            started = time.perf_counter()
            out = run([*HUB, "sync", "crm", "--tenant", "acme", *command], env)
            seconds = time.perf_counter() - started
            counts, written = out.splitlines()[-2:]
            listed, rest = counts.removeprefix("acme: ").split(" records, ", 1)
            imported = rest.split(" imported")[0]
            updated = rest.split(", ")[1].split(" updated")[0]
            back = written.split(" changes")[0]
            rate = f"{int(listed) / seconds:,.0f}" if int(listed) else "-"
            rows.append(
                f"| {records:,} | {name} | {int(listed):,} | {imported} | {updated} | {back} "
                f"| {seconds:.2f} | {rate} |"
            )
    return rows


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S * 10
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command[2:])} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def edit(url: str, count: int) -> None:
    """`count` records edited at the CRM, as a person would."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}) as crm:
        for position in range(count):
            body = {"title": f"Edited {position}"}
            answer = crm.post(f"/_control/contacts/crm-acme-{position:05d}", json=body)
            answer.raise_for_status()


if __name__ == "__main__":
    sys.exit(main())
