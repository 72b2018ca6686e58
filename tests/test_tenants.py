"""Tenants from the command line: usable at once, refused on every path while suspended,
served again once resumed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from hub.settings import Settings
from tests.conftest import ROOT, TEST_SECRET, MakeToken, running_app
from tests.helpers import codes, gql
from tests.test_webhooks import day, delivery, updated

TENANT = """{ tenant { id name status } me { tenant } }"""


async def _cli(
    settings: Settings, *args: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hub tenants …` in a process of its own, on the test's store (and with `environment`
    added to its environment)."""
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_DATABASE_SCHEMA": settings.database_schema or "",
        "HUB_JWT_SECRET": TEST_SECRET,
        "HUB_POLICIES_DIR": str(ROOT / "policies"),
    }
    if not settings.database_schema:
        del env["HUB_DATABASE_SCHEMA"]
    env.update(environment or {})
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hub", "tenants", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_a_tenant_made_on_the_command_line_is_refused_while_suspended_on_every_path(
    settings: Settings,
    make_token: MakeToken,
) -> None:
    settings = settings.model_copy(update={"tenant_status_ttl_s": 0})
    async with running_app(settings) as (_app, client):
        assert (await _cli(settings, "create", "hooli", "--name", "Hooli")).returncode == 0
        token = make_token(tenant="hooli")
        _, fresh = await gql(client, TENANT, token=token)
        assert fresh["data"] == {
            "tenant": {"id": "hooli", "name": "Hooli", "status": "ACTIVE"},
            "me": {"tenant": "hooli"},
        }
        assert (await _cli(settings, "suspend", "hooli")).returncode == 0
        status, refused = await gql(client, TENANT, token=token)
        exported = await client.get(
            "/export/InfluencerContacts.csv", headers={"Authorization": f"Bearer {token}"}
        )
        other = make_token(tenant="acme")
        _, unaffected = await gql(client, "{ me { tenant } }", token=other)
        # The webhook of a source is no tenant's: it is not refused for one.
        body, headers = delivery(updated(day("2026-10-01")), event_id="evt-tenants")
        webhook = await client.post("/webhooks/social", content=body, headers=headers)
        assert (await _cli(settings, "resume", "hooli")).returncode == 0
        _, resumed = await gql(client, "{ tenant { status } }", token=token)
        listing = (await _cli(settings, "list")).stdout
    assert (status, codes(refused)) == (403, ["FORBIDDEN"])
    assert "data" not in refused
    assert exported.status_code == 403 and codes(exported.json()) == ["FORBIDDEN"]
    assert unaffected["data"] == {"me": {"tenant": "acme"}}
    assert webhook.status_code == 202
    assert resumed["data"] == {"tenant": {"status": "ACTIVE"}}
    assert "hooli\tactive\tHooli" in listing and "acme\tactive" in listing


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("create", "Not Valid"), "a tenant id is 1-63 lower-case letters, digits and '-'"),
        (("create", "acme"), "tenant acme exists already"),
        (("suspend", "nobody"), "no tenant nobody"),
    ],
)
async def test_a_tenant_command_that_cannot_be_done_is_one_line(
    sqlite_settings: Settings, args: tuple[str, ...], line: str
) -> None:
    async with running_app(sqlite_settings):
        pass  # the demo store, with its tenants
    done = await _cli(sqlite_settings, *args)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"hub: {line}"


async def test_a_suspension_reaches_a_replica_within_its_status_ttl(
    sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"tenant_status_ttl_s": 60})
    async with running_app(settings) as (app, client):
        token = make_token(tenant="globex")
        assert (await gql(client, "{ me { tenant } }", token=token))[0] == 200
        assert (await _cli(settings, "suspend", "globex")).returncode == 0
        kept, _ = await gql(client, "{ me { tenant } }", token=token)
        tenants = app.state.hub.authenticator.tenants
        tenants.clock = lambda: float("inf")  # the status kept is past its TTL
        refused, _ = await gql(client, "{ me { tenant } }", token=token)
    assert (kept, refused) == (200, 403)
