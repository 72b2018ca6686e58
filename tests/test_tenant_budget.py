"""A tenant's own budget: charged besides each client's, refused when either is empty."""

from __future__ import annotations

from pathlib import Path

import yaml

from hub.settings import Settings
from tests.conftest import ROOT, MakeToken, running_app
from tests.helpers import codes, gql

QUERY = "{ campaigns(first: 5) { edges { node { name } } } }"  # 7 points, all used


def _policies(tmp_path: Path) -> Path:
    """The shipped policies; tenant acme with a budget of 20 points, client `dashboard`
    with 100, neither refilling in the test's time."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in (ROOT / "policies").iterdir():
        (folder / source.name).write_text(source.read_text())
    cost = yaml.safe_load((folder / "cost.yaml").read_text())
    cost["tenants"] = {"acme": {"bucket_size": 20, "restore_rate_per_s": 0.001}}
    cost["tiers"]["slow"] = {"max_query_cost": 50, "bucket_size": 100, "restore_rate_per_s": 0.001}
    cost["clients"]["dashboard"] = "slow"
    (folder / "cost.yaml").write_text(yaml.safe_dump(cost, sort_keys=False))
    return folder


async def test_the_clients_of_a_tenant_share_its_budget_besides_their_own(
    tmp_path: Path, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"policies_dir": _policies(tmp_path)})
    async with running_app(settings) as (app, client):
        first, second = make_token(client_id="dashboard"), make_token(client_id="reports")
        answers = [await gql(client, QUERY, token=token) for token in (first, second, first)]
        other = await gql(client, QUERY, token=make_token(tenant="globex", client_id="dashboard"))
        bucket = app.state.hub.bucket
        left = await bucket.refund("dashboard", 0, size=100, restore_rate_per_s=0.001)
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 429]  # 7 + 7 of 20; the third would need 21
    throttled = answers[2][1]
    assert codes(throttled) == ["THROTTLED"]
    assert "tenant 'acme'" in throttled["errors"][0]["message"]
    assert other[0] == 200  # another tenant's clients are not held by acme's budget
    # The refused request took nothing from the client's own bucket: of its 100 points, 7
    # went to acme's first request and 7 to globex's (the same client id), none to the third.
    assert left == 100 - 7 - 7


async def test_a_query_larger_than_its_tenants_whole_budget_is_refused_not_throttled(
    tmp_path: Path, sqlite_settings: Settings, make_token: MakeToken
) -> None:
    settings = sqlite_settings.model_copy(update={"policies_dir": _policies(tmp_path)})
    async with running_app(settings) as (_app, client):
        status, answer = await gql(
            client, "{ campaigns(first: 30) { edges { node { name } } } }", token=make_token()
        )
    assert codes(answer) == ["COST_ESTIMATED_TOO_EXPENSIVE"]
    assert answer["errors"][0]["extensions"]["cost"] == {"estimated": 32, "max": 20}
    assert status == 400
