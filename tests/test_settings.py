"""Settings come from `HUB_*` variables; a bad one stops with one clear line."""

from __future__ import annotations

import pytest

from hub.settings import SettingsError, load_settings


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
