"""Settings: the only code that reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]

DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"


class Settings(BaseSettings):
    """Every knob of the hub, read once from `HUB_*` variables (and `.env`)."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./var/hub.db"
    database_schema: str | None = Field(
        default=None, description="PostgreSQL schema to use (search_path); tests isolate by it"
    )
    cache_url: str = "memory://"
    policies_dir: Path = Path("./policies")

    jwt_secret: str | None = DEV_JWT_SECRET
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "influencer-hub"
    jwt_audience: str = "influencer-hub"
    jwt_algorithms: list[JwtAlgorithm] = ["HS256"]
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    allow_batching: bool = False
    max_batch_size: int = Field(default=10, ge=1, le=100)
    page_size_cap: int = Field(default=100, ge=1, le=10_000)
    document_cache_size: int = Field(default=1024, ge=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    demo: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("cache_url")
    @classmethod
    def _known_cache(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory:// or redis://host:port/db")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class SettingsError(Exception):
    """A setting has a bad value; `str()` is one line naming it."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, or raise `SettingsError` with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "HUB_" + "_".join(str(part) for part in first["loc"]).upper()
        raise SettingsError(f"bad setting {name}: {first['msg']}") from None
