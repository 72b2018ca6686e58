"""Shared fixtures: settings per database backend, the app behind a client, tokens."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from hub.app import create_app
from hub.auth import issue_token
from hub.observability import tracing
from hub.observability.logs import QUIET_LOGGERS, REQUEST_LINE, formatter, log_config
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-secret-0123456789abcdef0123456789"

MakeToken = Callable[..., str]


def _postgres_url() -> str:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        pytest.skip("HUB_TEST_DATABASE_URL is not set; PostgreSQL tests need a server")
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings on a fresh store: a SQLite file, or a PostgreSQL schema of this test's own."""
    common: dict[str, Any] = {
        "policies_dir": ROOT / "policies",
        "jwt_secret": TEST_SECRET,
        "demo": True,
    }
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db", **common)
        return
    url = _postgres_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield Settings(database_url=url, database_schema=schema, **common)
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/hub.db",
        policies_dir=ROOT / "policies",
        jwt_secret=TEST_SECRET,
        demo=True,
    )


SENT: dict[str, SentQuery] = {}
"""Every GraphQL request the suite sends through `running_app`, once each: the differential
test of the planned executor runs them all again on both executors."""


@dataclass(frozen=True, slots=True)
class SentQuery:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    authorization: str | None


async def _remember(request: httpx.Request) -> None:
    if request.url.path != "/graphql" or len(SENT) >= 10_000:
        return
    try:
        body = (
            json.loads(request.content)
            if request.method == "POST"
            else {
                "query": request.url.params.get("query"),
                "variables": json.loads(request.url.params.get("variables") or "null"),
            }
        )
    except (ValueError, RecursionError):
        return
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return
    variables, name = body.get("variables"), body.get("operationName")
    sent = SentQuery(
        body["query"],
        variables if isinstance(variables, dict) else None,
        name if isinstance(name, str) else None,
        request.headers.get("authorization"),
    )
    key = [sent.query, sent.variables, sent.operation_name, _claims(sent.authorization)]
    SENT.setdefault(json.dumps(key, sort_keys=True, default=str), sent)


def _claims(authorization: str | None) -> Any:
    """Who a request came from: its token's claims, times left out (each test makes its own)."""
    token = (authorization or "").removeprefix("Bearer ")
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return token
    return {k: v for k, v in claims.items() if k not in ("iat", "nbf", "exp")}


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app under its lifespan, and a client that talks to it in-process."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hub.test", event_hooks={"request": [_remember]}
        ) as client:
            yield app, client


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_app, client):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app under its lifespan on either database, with demo data."""
    async for value in _client(settings):
        yield value


@pytest.fixture
async def sqlite_client(sqlite_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a SQLite file with demo data, for tests that do not depend on the engine."""
    async for value in _client(sqlite_settings):
        yield value


@pytest.fixture
def make_token() -> Iterator[MakeToken]:
    settings = Settings(jwt_secret=TEST_SECRET)

    def make(**claims: Any) -> str:
        values: dict[str, Any] = {
            "subject": "tester",
            "tenant": "acme",
            "roles": ["manager"],
            "purpose": "campaign_management",
        }
        values.update(claims)
        return issue_token(settings, **values)

    yield make


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Whatever a test does to the logging set-up (`hub` commands configure it for their
    process) is undone after it: handlers, levels, structlog's configuration."""
    root = logging.getLogger()
    names = list(log_config("json")["loggers"])
    saved_root = (root.handlers[:], root.level)
    saved = {name: logging.getLogger(name) for name in names}
    state = {name: (lg.handlers[:], lg.level, lg.propagate) for name, lg in saved.items()}
    try:
        yield
    finally:
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for name, lg in saved.items():
            lg.handlers[:], level, lg.propagate = state[name]
            lg.setLevel(level)
        structlog.reset_defaults()


@dataclass
class CapturedLogs:
    """The JSON lines that the hub's formatter wrote while a test ran."""

    buffer: io.StringIO

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, each a JSON object (json.loads fails the test on any other)."""
        lines = [json.loads(line) for line in self.text.splitlines()]
        assert all(isinstance(line, dict) for line in lines)
        return lines

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == REQUEST_LINE]

    def request(self, request_id: str) -> dict[str, Any]:
        """The one request line of `request_id`."""
        found = [line for line in self.requests() if line["request_id"] == request_id]
        assert len(found) == 1, f"{len(found)} request lines for {request_id}: {self.text}"
        return found[0]


@pytest.fixture
def json_logs(logging_restored: None) -> Iterator[CapturedLogs]:
    """Every record at INFO and above, rendered as the hub renders them (`HUB_LOG_FORMAT`
    json), into a buffer the test reads."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield CapturedLogs(buffer)
    finally:
        root.removeHandler(handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The differential test of the planned executor runs last: it replays what the others sent."""
    last = [item for item in items if "test_every_query_the_suite_sends" in item.nodeid]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The hub's spans, kept in memory for the test (its own provider, not the process's)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = tracing.install(provider)
    yield exporter
    tracing.install(previous)
    provider.shutdown()
