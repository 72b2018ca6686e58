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
