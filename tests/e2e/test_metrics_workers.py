"""`hub serve --workers 2`: /metrics counts every worker's requests, whichever answers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_SECRET
from tests.e2e.conftest import REPO_ROOT, running_hub

REQUESTS = 40
SCRAPES = 6


def _pings(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hub_graphql_requests_total" and sample.labels == {
                "operation": "Ping",
                "outcome": "ok",
            }:
                return sample.value
    return 0.0


def test_metrics_add_up_every_workers_requests(tmp_path: Path) -> None:
    redis_url = os.environ.get("HUB_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("HUB_TEST_REDIS_URL is not set; several workers need a shared cache")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
            "HUB_JWT_SECRET": TEST_SECRET,
            "HUB_CACHE_URL": redis_url,
            "HUB_CACHE_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
            "TMPDIR": str(temp),  # where `hub serve` makes the workers' metrics directory
        }
    )
    # Migrated first: two workers must not both create a new store.
    subprocess.run(
        [sys.executable, "-m", "hub", "migrate"], cwd=REPO_ROOT, env=env, check=True, timeout=120
    )
    with running_hub(tmp_path, args=("--workers", "2"), env=env) as (_process, base_url):
        for _ in range(REQUESTS):
            # A new connection each time, so that either worker may take it.
            response = httpx.post(
                f"{base_url}/graphql", json={"query": "query Ping { __typename }"}, timeout=10
            )
            assert response.json() == {
                "data": {"__typename": "Query"},
                "extensions": response.json()["extensions"],
            }
        counted = [
            _pings(httpx.get(f"{base_url}/metrics", timeout=10).text) for _ in range(SCRAPES)
        ]
        directories = list(temp.glob("hub-metrics-*"))
        writers = {
            path.stem.rsplit("_", 1)[1]
            for directory in directories
            for path in directory.glob("counter_*.db")
        }
    assert counted == [REQUESTS] * SCRAPES
    assert len(directories) == 1 and len(writers) == 2, "each worker keeps its own counts"
    assert not directories[0].exists(), "the directory goes with the server"
