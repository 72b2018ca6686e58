"""The `hub` command line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from hub.__main__ import _metrics_shared_by, main
from hub.settings import DEV_JWT_SECRET
from hub.simulators import SimulatorConfig
from hub.simulators.serving import simulators_on_a_thread
from tests.conftest import ROOT, TEST_SECRET

# `main` configures logging for its process; each test gets the suite's set-up back.
pytestmark = pytest.mark.usefixtures("logging_restored")


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "HUB_JWT_SECRET": TEST_SECRET,
        "HUB_POLICIES_DIR": str(ROOT / "policies"),
    }


def test_seed_fills_the_store_with_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["seed", "--influencers", "300", "--campaigns", "12", "--tenants", "4"]) == 0
    out, err = capsys.readouterr()
    assert "influencers  [##############################] 300/300" in err
    assert "seeded 4 tenants, 300 influencers and 12 campaigns" in out
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("select count(*) from influencers").fetchone() == (300,)
        assert db.execute("select count(*) from tenants").fetchone() == (4,)
    assert main(["seed", "--influencers", "10"]) == 1
    assert "pass --reset" in capsys.readouterr().err
    assert main(["seed", "--influencers", "10", "--campaigns", "1", "--reset"]) == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("select count(*) from influencers").fetchone() == (10,)


def test_token_prints_a_verifiable_development_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    code = main(
        [
            "token",
            "--tenant",
            "acme",
            "--role",
            "partner",
            "--scope",
            "campaigns:read metrics:read",
            "--purpose",
            "analytics",
            "--campaign",
            "cmp_0000000000000001",
            "--client-id",
            "bi",
        ]
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"], audience="influencer-hub")
    assert claims["tenant"] == "acme"
    assert claims["roles"] == ["partner"]
    assert claims["scope"] == "campaigns:read metrics:read"
    assert claims["campaigns"] == ["cmp_0000000000000001"]
    assert claims["client_id"] == "bi"


def test_a_bad_setting_stops_the_command_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "migrate"],
        env={"HUB_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hub: bad setting HUB_DATABASE_URL: Value error, must start with "
        "sqlite+aiosqlite:// or postgresql+asyncpg://"
    ]


def test_migrate_then_migrate_again_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "migrated to the newest revision",
        "already up to date",
    ]


def test_policies_check_and_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["policies", "check"]) == 0
    assert "5 roles, 9 scopes" in capsys.readouterr().out
    assert main(["schema"]) == 0
    assert capsys.readouterr().out.strip() == (ROOT / "schema.graphql").read_text().strip()


def test_cost_explains_a_query_with_its_breakdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    document = tmp_path / "q.graphql"
    document.write_text("query Q($n: Int) { campaigns(first: $n) { edges { node { name } } } }")
    assert main(["cost", str(document), "--variables", '{"n": 7}', "--client-id", "bi"]) == 0
    out = capsys.readouterr().out
    assert "Estimated cost: 9 points" in out
    assert "CampaignEdge.node" in out
    assert "Client bi: tier standard, allowed" in out
    document.write_text("{ " + " ".join(f"a{i}: me {{ subject }}" for i in range(30)) + " }")
    assert main(["cost", str(document)]) == 0
    wide = capsys.readouterr().out
    assert "root fields              30 / 10  OVER THE LIMIT" in wide


@pytest.mark.parametrize("kept_answers_ttl", ["0", "30"])
def test_several_workers_on_the_in_process_cache_are_refused_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kept_answers_ttl: str,
) -> None:
    for key, value in {**_env(tmp_path), "HUB_RESPONSE_CACHE_TTL_S": kept_answers_ttl}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUB_CACHE_URL", raising=False)
    assert main(["serve", "--workers", "2"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "budgets, rate limits" in lines[0] and "HUB_CACHE_URL=redis://" in lines[0]


def test_serve_outside_the_demo_refuses_the_development_secret_with_one_line(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--port", "0"],
        env={
            "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
            "HUB_POLICIES_DIR": str(ROOT / "policies"),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hub: HUB_JWT_SECRET is the published development secret: set a secret of your own, "
        "or an empty HUB_JWT_SECRET with HUB_JWT_JWKS_URL (or run with --demo)"
    ]
    assert not (tmp_path / "cli.db").exists()


def test_serve_refuses_the_development_source_credential_on_a_source_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {**_env(tmp_path), "HUB_SOCIAL_URL": "https://social.example"}.items():
        monkeypatch.setenv(key, value)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "hub: HUB_SOCIAL_CREDENTIAL is the development credential while HUB_SOCIAL_URL is set: "
        "set the source's own credential"
    ]


def test_commands_that_do_not_serve_work_with_the_default_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HUB_JWT_SECRET")
    monkeypatch.setenv("HUB_CRM_URL", "https://crm.example")
    assert main(["token", "--tenant", "acme", "--role", "manager"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"], audience="influencer-hub")
    assert claims["sub"] == "manager@acme"
    assert main(["migrate"]) == 0
    assert main(["seed", "--influencers", "5", "--campaigns", "1", "--tenants", "1"]) == 0
    assert main(["policies", "check"]) == 0
    assert main(["schema"]) == 0
    document = tmp_path / "q.graphql"
    document.write_text("{ me { subject } }")
    assert main(["cost", str(document)]) == 0
    assert "hub:" not in capsys.readouterr().err


def test_one_worker_keeps_metrics_in_process_and_a_named_directory_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with _metrics_shared_by(1):
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with _metrics_shared_by(2):
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.is_dir()
    assert not made.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with _metrics_shared_by(2):
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
    assert tmp_path.is_dir()


def test_sync_crm_imports_each_tenants_contacts_and_then_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    assert main(["sync", "crm"]) == 1
    assert "HUB_CRM_URL is not set" in capsys.readouterr().err
    assert main(["seed", "--influencers", "150", "--campaigns", "9", "--tenants", "3"]) == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:
        seeded = db.execute("select count(*) from contacts where tenant_id = 'acme'").fetchone()[0]
    capsys.readouterr()
    with simulators_on_a_thread({"crm": SimulatorConfig()}) as urls:
        monkeypatch.setenv("HUB_CRM_URL", urls["crm"])
        assert main(["sync", "crm", "--tenant", "nope"]) == 1
        assert "no tenant nope" in capsys.readouterr().err
        assert main(["sync", "crm", "--full", "--tenant", "acme"]) == 0
        out, err = capsys.readouterr()
        assert f"acme: 100 records, {100 - seeded} imported" in out
        assert "crm acme     100 records" in err
        # The seeded people's names and emails (hub-owned) went to the CRM after the run.
        assert out.splitlines()[-1] == f"{seeded} changes written back to the CRM"
        assert main(["sync", "crm"]) == 0
        out, _err = capsys.readouterr()
        # acme again lists only what changed since (what it wrote back, and what the overlap
        # reads again), and finds both sides agree; the others' first runs import theirs.
        lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        listed, rest = lines["acme"].split(" records, ")
        assert seeded <= int(listed) <= seeded + 1
        assert rest.startswith("0 imported, 0 updated, 0 conflicts")
        assert lines["globex"].startswith("100 records, ")
    with sqlite3.connect(tmp_path / "cli.db") as db:
        counts = dict(db.execute("select tenant_id, count(*) from contacts group by tenant_id"))
    assert counts == {"acme": 100, "globex": 100, "initech": 100}
