"""Settings come from `HUB_*` variables; a bad one stops with one clear line; secrets never
show and unsafe ones stop a hub that serves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from hub.app import create_app
from hub.auth import issue_token
from hub.settings import (
    DEV_JWT_SECRET,
    Settings,
    SettingsError,
    check_serving_secrets,
    load_settings,
)
from hub.store import seed
from tests.conftest import ROOT
from tests.helpers import codes, gql

logger = logging.getLogger("tests.settings")


def test_settings_are_read_from_hub_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PAGE_SIZE_CAP", "250")
    monkeypatch.setenv("HUB_CACHE_URL", "redis://127.0.0.1:6379/2")
    settings = load_settings()
    assert settings.page_size_cap == 250
    assert settings.cache_url == "redis://127.0.0.1:6379/2"
    assert settings.database_url == "sqlite+aiosqlite:///./var/hub.db"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HUB_DATABASE_URL", "mysql://x", "bad setting HUB_DATABASE_URL"),
        ("HUB_CACHE_URL", "memcached://x", "bad setting HUB_CACHE_URL"),
        ("HUB_PAGE_SIZE_CAP", "zero", "bad setting HUB_PAGE_SIZE_CAP"),
        ("HUB_JWT_ALGORITHMS", '["none"]', "bad setting HUB_JWT_ALGORITHMS"),
        ("HUB_CRM_URL", "crm.example", "bad setting HUB_CRM_URL"),
        ("HUB_SOCIAL_TIMEOUT_S", "0", "bad setting HUB_SOCIAL_TIMEOUT_S"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_source_settings_carry_each_sources_url_credential_and_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_SOCIAL_URL", "https://social.example")
    monkeypatch.setenv("HUB_SOCIAL_CREDENTIAL", "k-123")
    monkeypatch.setenv("HUB_SOCIAL_TIMEOUT_S", "0.5")
    monkeypatch.setenv("HUB_SOCIAL_QUOTA_PER_S", "20")
    monkeypatch.setenv("HUB_SOURCE_RETRIES", "1")
    social = load_settings().source_settings("social")
    assert (social.name, social.base_url, social.credential) == (
        "social",
        "https://social.example",
        "k-123",
    )
    assert (social.timeout_s, social.quota_per_s, social.retries) == (0.5, 20.0, 1)


def test_a_source_without_a_url_has_no_source_settings() -> None:
    settings = load_settings()
    assert settings.crm_url is None
    assert settings.crm_credential == "sim-dev-key"
    with pytest.raises(ValueError, match="HUB_CRM_URL"):
        settings.source_settings("crm")
    assert settings.source_settings("crm", base_url="http://127.0.0.1:1").base_url == (
        "http://127.0.0.1:1"
    )


SECRET_SETTINGS = ["jwt_secret", "crm_credential", "social_credential", "discovery_credential"]
OWN_SECRET = "an-own-secret-of-this-deployment-0123456789"


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_every_secret_is_read_from_its_hub_name_file_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_text(f"{OWN_SECRET}\r\n", encoding="utf-8")
    monkeypatch.setenv(f"HUB_{name.upper()}_FILE", str(path))
    settings = load_settings()
    assert getattr(settings, name) == OWN_SECRET
    others = [other for other in SECRET_SETTINGS if other != name]
    assert all(getattr(settings, other) != OWN_SECRET for other in others)


@pytest.mark.parametrize(
    ("file_text", "also_the_value", "message"),
    [
        pytest.param(
            OWN_SECRET,
            True,
            "bad setting HUB_CRM_CREDENTIAL_FILE: set either it or HUB_CRM_CREDENTIAL, not both",
            id="value_and_file",
        ),
        pytest.param(
            None,
            False,
            "bad setting HUB_CRM_CREDENTIAL_FILE: cannot read {path}: No such file or directory",
            id="missing_file",
        ),
        pytest.param(
            "\n", False, "bad setting HUB_CRM_CREDENTIAL_FILE: {path} is empty", id="empty"
        ),
        pytest.param(
            "s" * (64 * 1024 + 1),
            False,
            "bad setting HUB_CRM_CREDENTIAL_FILE: {path} is larger than 65536 bytes",
            id="too_large",
        ),
        pytest.param(
            b"\xff\xfe" + OWN_SECRET.encode(),
            False,
            "bad setting HUB_CRM_CREDENTIAL_FILE: {path} is not UTF-8 text",
            id="not_text",
        ),
    ],
)
def test_a_secret_file_that_cannot_give_the_secret_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    file_text: str | bytes | None,
    also_the_value: bool,
    message: str,
) -> None:
    path = tmp_path / "crm-credential"
    if isinstance(file_text, str):
        path.write_text(file_text, encoding="utf-8")
    elif isinstance(file_text, bytes):
        path.write_bytes(file_text)
    monkeypatch.setenv("HUB_CRM_CREDENTIAL_FILE", str(path))
    if also_the_value:
        monkeypatch.setenv("HUB_CRM_CREDENTIAL", "value-given-too")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == message.format(path=path)
    assert OWN_SECRET not in str(raised.value)
    assert "value-given-too" not in str(raised.value)


def test_no_secret_shows_in_the_repr_or_str_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_JWT_SECRET", OWN_SECRET)
    for name in ("CRM", "SOCIAL", "DISCOVERY"):
        monkeypatch.setenv(f"HUB_{name}_CREDENTIAL", f"{name.lower()}-credential-7c1e")
    monkeypatch.setenv("HUB_SOCIAL_WEBHOOK_SECRET", "webhook-credential-7c1e")
    settings = load_settings()
    assert settings.jwt_secret == OWN_SECRET
    shown = [
        repr(settings),
        str(settings),
        repr(settings.source_settings("crm", base_url="http://c")),
    ]
    for text in shown:
        assert OWN_SECRET not in text
        assert "credential-7c1e" not in text
    assert "jwt_issuer='influencer-hub'" in shown[0]  # the other settings still show


def test_an_empty_jwt_secret_means_none() -> None:
    assert load_settings(jwt_secret="").jwt_secret is None


@pytest.mark.parametrize(
    ("values", "line"),
    [
        pytest.param(
            {},
            "HUB_JWT_SECRET is the published development secret: set a secret of your own, "
            "or an empty HUB_JWT_SECRET with HUB_JWT_JWKS_URL (or run with --demo)",
            id="development_secret",
        ),
        pytest.param(
            {"jwt_secret": DEV_JWT_SECRET, "jwt_jwks_url": "https://idp.example/jwks"},
            "HUB_JWT_SECRET is the published development secret: set a secret of your own, "
            "or an empty HUB_JWT_SECRET with HUB_JWT_JWKS_URL (or run with --demo)",
            id="development_secret_beside_a_jwks",
        ),
        pytest.param(
            {"jwt_secret": ""},
            "no HUB_JWT_SECRET and no HUB_JWT_JWKS_URL: no token could be verified",
            id="no_secret_no_jwks",
        ),
        pytest.param(
            {"jwt_secret": "31-bytes-is-one-byte-too-short"},
            "HUB_JWT_SECRET must be at least 32 bytes",
            id="short_secret",
        ),
        pytest.param(
            {"jwt_secret": OWN_SECRET, "crm_url": "https://crm.example"},
            "HUB_CRM_CREDENTIAL is the development credential while HUB_CRM_URL is set: "
            "set the source's own credential",
            id="crm_development_credential",
        ),
        pytest.param(
            {
                "jwt_secret": OWN_SECRET,
                "social_url": "https://social.example",
                "social_credential": "own",
                "discovery_url": "https://discovery.example",
            },
            "HUB_DISCOVERY_CREDENTIAL is the development credential while HUB_DISCOVERY_URL is "
            "set: set the source's own credential",
            id="discovery_development_credential",
        ),
        pytest.param(
            {"jwt_secret": OWN_SECRET, "social_webhook_secret": "sim-dev-webhook-secret"},
            "HUB_SOCIAL_WEBHOOK_SECRET is the development secret: set the one the sender uses",
            id="development_webhook_secret",
        ),
    ],
)
def test_serving_outside_the_demo_refuses_unsafe_secrets_with_one_line(
    values: dict[str, object], line: str
) -> None:
    settings = load_settings(**values)
    with pytest.raises(SettingsError) as raised:
        check_serving_secrets(settings)
    assert str(raised.value) == line
    with pytest.raises(SettingsError) as from_the_app:
        create_app(settings.model_copy(update={"policies_dir": ROOT / "policies"}))
    assert str(from_the_app.value) == line
    check_serving_secrets(settings.model_copy(update={"demo": True}))


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"jwt_secret": OWN_SECRET}, id="own_secret"),
        pytest.param({"jwt_secret": "", "jwt_jwks_url": "https://idp.example/jwks"}, id="jwks"),
        pytest.param(
            {"jwt_secret": OWN_SECRET, "crm_url": "https://crm.example", "crm_credential": "own"},
            id="own_source_credential",
        ),
    ],
)
def test_serving_outside_the_demo_accepts_secrets_of_its_own(values: dict[str, object]) -> None:
    check_serving_secrets(load_settings(**values))


async def test_no_secret_appears_in_a_log_line_of_a_serving_hub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = {name: f"{name}-credential-7c1e" for name in ("crm", "social", "discovery")}
    sent: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("authorization", ""))
        return httpx.Response(401, json={"error": "unauthorized"})

    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        "policies_dir": ROOT / "policies",
        "jwt_secret": OWN_SECRET,
        **{f"{name}_url": f"https://{name}.example" for name in credentials},
        **{f"{name}_credential": value for name, value in credentials.items()},
    }
    settings = Settings(**values)
    app = create_app(settings, transport=httpx.MockTransport(refuse))
    token = issue_token(settings, subject="logs", tenant="acme", roles=["manager"])
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            await seed.seed(app.state.hub.engine, seed.SeedPlan(influencers=3, campaigns=1))
            query = "{ influencers(first: 3) { edges { node { accounts { followers } } } } }"
            _, answered = await gql(client, query, token=token)
            await gql(client, query, token=token[:-4] + "AAAA")
            logger.info("settings: %s %r", settings, settings)
    assert "SOURCE_UNAVAILABLE" in codes(answered)
    assert f"Bearer {credentials['social']}" in sent  # the credential was used, and refused
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}"
        for record in caplog.records
    )
    assert "settings: " in logged
    for secret in (OWN_SECRET, *credentials.values()):
        assert secret not in logged


@pytest.mark.parametrize(
    ("demo", "given", "expected"),
    [
        (False, None, "json"),
        (True, None, "console"),
        (True, "json", "json"),
        (False, "console", "console"),
    ],
)
def test_logs_are_json_outside_the_demo_unless_a_format_is_set(
    demo: bool, given: str | None, expected: str
) -> None:
    assert load_settings(demo=demo, log_format=given).logs_as == expected


def test_an_unknown_log_format_stops_start_up_with_one_line() -> None:
    with pytest.raises(SettingsError, match=r"^bad setting HUB_LOG_FORMAT: "):
        load_settings(log_format="xml")
