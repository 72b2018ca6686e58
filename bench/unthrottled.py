"""A copy of the policies whose cost budgets never run dry for the benchmarks' clients: a
benchmark measures execution, and a throttled answer is fast and would make its figures lie."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from shutil import copytree

import yaml

ROOT = Path(__file__).resolve().parents[1]
TIER = "bench-unthrottled"
BENCH_TIER = {"max_query_cost": 10**9, "bucket_size": 10**12, "restore_rate_per_s": 10**9}


def unthrottled_policies(folder: Path, client_ids: Iterable[str]) -> Path:
    """`policies/` copied into `folder`, with `client_ids` on a tier without limits."""
    policies = folder / "policies"
    copytree(ROOT / "policies", policies)
    cost_file = policies / "cost.yaml"
    cost = yaml.safe_load(cost_file.read_text(encoding="utf-8"))
    cost["tiers"][TIER] = BENCH_TIER
    for client_id in client_ids:
        cost["clients"][client_id] = TIER
    cost_file.write_text(yaml.safe_dump(cost, sort_keys=False), encoding="utf-8")
    return policies
