"""What field authorization, limits with cost analysis, and consent add to warm dashboard
queries, in process (prints figures)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from unthrottled import unthrottled_policies

from hub.app import create_app
from hub.auth import issue_token
from hub.policy.access import FieldScopes
from hub.schema.consent import PersonalData
from hub.schema.cost import QueryCost
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = """
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
CONTACTS = """
query Contacts($id: ID!) {
  campaign(id: $id) {
    members(first: 20) { edges { node { influencer { handle
      contacts { role fullName email phone } } } } }
  }
}
"""

Toggle = Callable[[Any], Any]


@contextmanager
def guard_off(hub: Any) -> Any:
    kept = hub.policies
    hub.policies = replace(kept, field_scopes=FieldScopes({}))
    yield
    hub.policies = kept


@contextmanager
def cost_off(hub: Any) -> Any:
    kept = hub.schema.extensions
    hub.schema.extensions = tuple(e for e in kept if e is not QueryCost)
    yield
    hub.schema.extensions = kept


@contextmanager
def consent_off(_hub: Any) -> Any:
    kept = PersonalData.resolve_async

    async def passthrough(self: Any, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        return await next_(source, info, **kwargs)

    PersonalData.resolve_async = passthrough  # type: ignore[method-assign]
    yield
    PersonalData.resolve_async = kept  # type: ignore[method-assign]


@contextmanager
def nothing_off(_hub: Any) -> Any:
    yield


async def compare(
    client: httpx.AsyncClient,
    hub: Any,
    body: dict[str, Any],
    headers: dict[str, str],
    runs: dict[str, Callable[[Any], Any]],
    rounds: int,
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {label: [] for label in runs}
    for _round in range(rounds):
        for label, toggle in runs.items():
            with toggle(hub):
                started = time.perf_counter()
                response = await client.post("/graphql", json=body, headers=headers)
                figures[label].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return figures


def report(title: str, figures: dict[str, list[float]]) -> None:
    print(title)
    baseline = statistics.median(figures["everything on"])
    for label, samples in figures.items():
        samples.sort()
        p50 = statistics.median(samples)
        p95 = samples[int(len(samples) * 0.95) - 1]
        change = (
            ""
            if label == "everything on"
            else (f"  (everything on is {100 * (baseline - p50) / p50:+.1f} %)")
        )
        print(f"  {label:<22} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms{change}")


async def measure(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{folder}/hub.db",
            policies_dir=unthrottled_policies(Path(folder), ["bench"]),
            demo=True,
        )
        app = create_app(settings)
        async with LifespanManager(app) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                hub = app.state.hub

                def token(**claims: Any) -> dict[str, str]:
                    made = issue_token(
                        settings,
                        subject="bench",
                        tenant="acme",
                        client_id="graphiql-demo",
                        **claims,
                    )
                    return {"Authorization": f"Bearer {made}"}

                # A partner: some fields are denied to it, but not those the query touches.
                partner = token(roles=["partner"], scopes=["campaigns:read", "influencers:read"])
                manager = token(roles=["manager"], purpose="analytics")
                first = await client.post(
                    "/graphql",
                    json={"query": "{ campaigns(first: 1) { edges { node { id } } } }"},
                    headers=manager,
                )
                campaign_id = first.json()["data"]["campaigns"]["edges"][0]["node"]["id"]
                variables = {"id": campaign_id}
                campaign = await compare(
                    client,
                    hub,
                    {"query": CAMPAIGN, "variables": variables},
                    partner,
                    {
                        "everything on": nothing_off,
                        "field guard off": guard_off,
                        "cost and limits off": cost_off,
                    },
                    rounds,
                )
                contacts = await compare(
                    client,
                    hub,
                    {"query": CONTACTS, "variables": variables},
                    manager,
                    {"everything on": nothing_off, "consent off": consent_off},
                    rounds,
                )
    report("campaign dashboard (partner; no denied field touched):", campaign)
    report("contacts with personal data (analytics purpose; consent decided per value):", contacts)


if __name__ == "__main__":
    asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
