"""What field authorization, and limits with cost analysis, add to a warm dashboard query,
in process (prints figures)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from hub.app import create_app
from hub.auth import issue_token
from hub.policy.access import FieldScopes
from hub.schema.cost import QueryCost
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = """
query Dashboard($id: ID!) {
  campaign(id: $id) {
    name brand status budget { amount currency }
    members(first: 20) { totalCount edges { node {
      status fee { amount }
      influencer { handle displayName country accounts { platform username }
        campaigns(first: 3) { totalCount edges { node { name } } } }
    } } }
  }
}
"""


async def measure(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{folder}/hub.db",
            policies_dir=ROOT / "policies",
            demo=True,
        )
        app = create_app(settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                hub = app.state.hub
                # A partner without contacts:read: some fields are denied, so the guard is on.
                token = issue_token(
                    settings,
                    subject="bench",
                    tenant="acme",
                    roles=["partner"],
                    scopes=["campaigns:read", "influencers:read"],
                    client_id="graphiql-demo",  # the internal tier: the bench never throttles
                )
                headers = {"Authorization": f"Bearer {token}"}
                first = await client.post(
                    "/graphql",
                    json={"query": "{ campaigns(first: 1) { edges { node { id } } } }"},
                    headers=headers,
                )
                campaign_id = first.json()["data"]["campaigns"]["edges"][0]["node"]["id"]
                body = {"query": DASHBOARD, "variables": {"id": campaign_id}}
                guarded = hub.policies
                unguarded = replace(guarded, field_scopes=FieldScopes({}))
                costed = hub.schema.extensions
                uncosted = tuple(e for e in costed if e is not QueryCost)
                runs = {
                    "everything on": (guarded, costed),
                    "field guard off": (unguarded, costed),
                    "cost and limits off": (guarded, uncosted),
                }
                figures: dict[str, list[float]] = {label: [] for label in runs}
                for _round in range(rounds):
                    for label, (policies, extensions) in runs.items():
                        hub.policies = policies
                        hub.schema.extensions = extensions
                        started = time.perf_counter()
                        response = await client.post("/graphql", json=body, headers=headers)
                        figures[label].append((time.perf_counter() - started) * 1000)
                        assert "errors" not in response.json(), response.text
                hub.policies, hub.schema.extensions = guarded, costed
    for label, samples in figures.items():
        samples.sort()
        p50 = statistics.median(samples)
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(f"{label:<10} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({len(samples)} requests)")
    on = statistics.median(figures["everything on"])
    for label, what in (
        ("field guard off", "field authorization"),
        ("cost and limits off", "limits and cost analysis"),
    ):
        off = statistics.median(figures[label])
        print(f"{what} adds {100 * (on - off) / off:+.1f} % at p50")


if __name__ == "__main__":
    asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
