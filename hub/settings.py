"""Settings: the only code that reads the environment."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.sources.base import SourceSettings

LogFormat = Literal["json", "console"]
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]

DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"
DEV_SOURCE_CREDENTIAL = "sim-dev-key"
SOURCE_NAMES = ("crm", "social", "discovery")
DEV_WEBHOOK_SECRET = "sim-dev-webhook-secret"
"""What the demo's simulators sign their deliveries with; refused outside the demo."""
SECRET_NAMES = (
    "jwt_secret",
    *(f"{name}_credential" for name in SOURCE_NAMES),
    "social_webhook_secret",
    "crm_webhook_secret",
)
"""Settings that also read from a file, `HUB_<NAME>_FILE`, and never show in a `repr`."""
MIN_JWT_SECRET_BYTES = 32
_ORIGIN = re.compile(r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
MAX_SECRET_FILE_BYTES = 64 * 1024


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
    trusted_documents: Path | None = Field(
        default=None,
        description="Trusted-documents manifest; default: trusted-documents.json in policies_dir",
    )

    jwt_secret: str | None = Field(default=DEV_JWT_SECRET, repr=False)
    jwt_secret_file: Path | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "influencer-hub"
    jwt_audience: str = "influencer-hub"
    jwt_algorithms: list[JwtAlgorithm] = ["HS256"]
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="Proxies (addresses or networks) whose X-Forwarded-For is believed",
    )
    page_size_cap: int = Field(default=100, ge=1, le=10_000)
    document_cache_size: int = Field(default=1024, ge=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    response_cache_ttl_s: float = Field(
        default=0.0, ge=0, description="Keep whole query answers this long; 0 keeps none"
    )
    erasure_retry_interval_s: float = Field(default=30.0, gt=0)
    social_webhook_secret: str | None = Field(default=None, repr=False)
    social_webhook_secret_file: Path | None = None
    crm_webhook_secret: str | None = Field(default=None, repr=False)
    crm_webhook_secret_file: Path | None = None
    crm_sync_interval_s: float = Field(
        default=900.0, ge=0, description="Sync each tenant's contacts with the CRM; 0: never"
    )
    crm_outbox_interval_s: float = Field(
        default=2.0, gt=0, description="How often changes queued for the CRM are sent"
    )
    webhook_retry_interval_s: float = Field(default=10.0, gt=0)
    ingest_interval_s: float = Field(default=3600.0, ge=0)
    sweep_interval_s: float = Field(default=3600.0, ge=0)
    tenant_status_ttl_s: float = Field(default=5.0, ge=0, le=300)
    demo_webhook_url: str | None = Field(
        default=None, description="where the demo's social simulator sends its webhooks"
    )
    ingest_days: int = Field(default=3, ge=1, le=366)
    ws_init_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a WebSocket may wait before connection_init"
    )
    ws_max_subscriptions: int = Field(
        default=20, ge=1, le=1000, description="Subscriptions one WebSocket may hold at once"
    )
    ws_max_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest message a WebSocket client may send",
    )
    ws_queue_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Events waiting for one subscriber; one that falls further behind is dropped",
    )
    audit_buffer_max_events: int = Field(
        default=100_000, ge=1, description="Audit events kept in memory while the store is down"
    )

    metrics_max_operations: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="Operation names besides the trusted documents' with a metrics series each",
    )

    demo: bool = False
    log_format: LogFormat | None = Field(
        default=None, description="json or console; default: json, console in the demo"
    )
    access_log: bool = Field(default=False, description="uvicorn's line per HTTP request")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (JSON list) whose browsers may call the hub; preflights answered",
    )
    engine_enabled: bool = Field(
        default=True, description="Run queries on the planned executor (hub.engine)"
    )

    cache_namespace: str = Field(default="hub", min_length=1, max_length=64)
    cache_local_ttl_s: float = Field(default=5.0, ge=0)
    replicas: int = Field(
        default=1,
        ge=1,
        le=10_000,
        description="Hub processes sharing one Redis; each keeps 1/replicas of a budget when away",
    )
    cache_max_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)

    source_retries: int = Field(default=2, ge=0, le=5)
    source_breaker_failures: int = Field(default=5, ge=1)
    source_breaker_reset_s: float = Field(default=10.0, ge=0)

    crm_url: str | None = None
    crm_credential: str | None = Field(default=DEV_SOURCE_CREDENTIAL, repr=False)
    crm_credential_file: Path | None = None
    crm_timeout_s: float = Field(default=2.0, gt=0, le=60)
    crm_ttl_s: float = Field(default=300.0, ge=0)
    crm_quota_per_s: float | None = Field(default=None, gt=0)
    social_url: str | None = None
    social_credential: str | None = Field(default=DEV_SOURCE_CREDENTIAL, repr=False)
    social_credential_file: Path | None = None
    social_timeout_s: float = Field(default=2.0, gt=0, le=60)
    social_ttl_s: float = Field(default=300.0, ge=0)
    social_quota_per_s: float | None = Field(default=None, gt=0)
    discovery_url: str | None = None
    discovery_credential: str | None = Field(default=DEV_SOURCE_CREDENTIAL, repr=False)
    discovery_credential_file: Path | None = None
    discovery_timeout_s: float = Field(default=2.0, gt=0, le=60)
    discovery_ttl_s: float = Field(default=3600.0, ge=0)
    discovery_quota_per_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """`HUB_<NAME>_FILE` gives the secret `<name>` as a file's text (Docker and Kubernetes
        secrets), without its trailing newline."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in SECRET_NAMES:
            path = data.get(f"{name}_file")
            if path is None or path == "":
                continue
            setting = f"HUB_{name.upper()}_FILE"
            if name in data:
                raise SecretFileError(setting, f"set either it or HUB_{name.upper()}, not both")
            data[name] = _read_secret(setting, Path(path))
        return data

    @field_validator("jwt_secret")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None  # `HUB_JWT_SECRET=`: no secret, tokens come from the JWKS only

    @field_validator("crm_url", "social_url", "discovery_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

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

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _ORIGIN.match(value):
                raise ValueError(
                    f"{value!r} is not an origin: scheme://host[:port], such as "
                    "https://app.example.com (no path, no trailing slash, no wildcard)"
                )
        return values

    @property
    def logs_as(self) -> LogFormat:
        """The log format in force: the one set, else JSON (console lines in the demo)."""
        if self.log_format is not None:
            return self.log_format
        return "console" if self.demo else "json"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def has_source_urls(self) -> bool:
        return any(getattr(self, f"{name}_url") is not None for name in SOURCE_NAMES)

    def source_settings(self, name: str, *, base_url: str | None = None) -> SourceSettings:
        """How to reach source `name` (`crm`, `social`, `discovery`); `base_url` overrides
        the configured URL (the demo's simulators)."""
        if name not in SOURCE_NAMES:
            raise ValueError(f"unknown source {name!r}")
        url = base_url or getattr(self, f"{name}_url")
        if url is None:
            raise ValueError(f"source {name!r} has no URL: set HUB_{name.upper()}_URL")
        return SourceSettings(
            name=name,
            base_url=url,
            credential=getattr(self, f"{name}_credential"),
            timeout_s=getattr(self, f"{name}_timeout_s"),
            ttl_s=getattr(self, f"{name}_ttl_s"),
            quota_per_s=getattr(self, f"{name}_quota_per_s"),
            retries=self.source_retries,
            breaker_failures=self.source_breaker_failures,
            breaker_reset_s=self.source_breaker_reset_s,
        )

    def webhook_secret(self, source: str) -> str | None:
        """The secret `source` signs its webhooks with; the demo's own without one."""
        secret: str | None = getattr(self, f"{source}_webhook_secret", None)
        return secret or (DEV_WEBHOOK_SECRET if self.demo else None)


class SettingsError(Exception):
    """A setting has a bad value; `str()` is one line naming it (never a secret's value)."""


class SecretFileError(ValueError):
    """A `HUB_<NAME>_FILE` cannot give its secret; `setting` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, or raise `SettingsError` with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        error = first.get("ctx", {}).get("error")
        if isinstance(error, SecretFileError):
            raise SettingsError(f"bad setting {error.setting}: {error}") from None
        name = "HUB_" + "_".join(str(part) for part in first["loc"]).upper()
        raise SettingsError(f"bad setting {name}: {first['msg']}") from None


def check_serving_secrets(settings: Settings) -> None:
    """Outside the demo, refuse to serve with secrets anyone with the repository knows, or
    with no way to verify a token: `SettingsError`, one line for the first problem found.
    Commands that do not serve (tokens, schema, migrations, seeds) need no such check."""
    if settings.demo:
        return
    secret = settings.jwt_secret
    if secret == DEV_JWT_SECRET:
        raise SettingsError(
            "HUB_JWT_SECRET is the published development secret: set a secret of your own, "
            "or an empty HUB_JWT_SECRET with HUB_JWT_JWKS_URL (or run with --demo)"
        )
    if secret is None and settings.jwt_jwks_url is None:
        raise SettingsError("no HUB_JWT_SECRET and no HUB_JWT_JWKS_URL: no token could be verified")
    if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise SettingsError(f"HUB_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
    for source in ("social", "crm"):
        if getattr(settings, f"{source}_webhook_secret") == DEV_WEBHOOK_SECRET:
            raise SettingsError(
                f"HUB_{source.upper()}_WEBHOOK_SECRET is the development secret: "
                "set the one the sender uses"
            )
    for name in SOURCE_NAMES:
        if getattr(settings, f"{name}_url") and (
            getattr(settings, f"{name}_credential") == DEV_SOURCE_CREDENTIAL
        ):
            raise SettingsError(
                f"HUB_{name.upper()}_CREDENTIAL is the development credential while "
                f"HUB_{name.upper()}_URL is set: set the source's own credential"
            )


def _read_secret(setting: str, path: Path) -> str:
    try:
        with path.open("rb") as file:
            content = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(setting, f"cannot read {path}: {exc.strerror}") from None
    if len(content) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(setting, f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        secret = content.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretFileError(setting, f"{path} is not UTF-8 text") from None
    if not secret:
        raise SecretFileError(setting, f"{path} is empty")
    return secret
