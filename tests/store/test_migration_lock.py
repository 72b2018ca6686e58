"""Replicas started together on an empty PostgreSQL store all come up: one migrates, the
others wait for it under the migration lock and find the store current."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.store import migrate
from tests.conftest import ROOT, TEST_SECRET, _postgres_url


@pytest.fixture
async def empty_schema() -> AsyncIterator[tuple[str, str]]:
    url = _postgres_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_four_processes_migrating_one_empty_store_together_all_succeed(
    empty_schema: tuple[str, str],
) -> None:
    url, schema = empty_schema
    env = {
        **os.environ,
        "HUB_DATABASE_URL": url,
        "HUB_DATABASE_SCHEMA": schema,
        "HUB_JWT_SECRET": TEST_SECRET,
        "HUB_POLICIES_DIR": str(ROOT / "policies"),
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [await process.communicate() for process in processes]
    failures = [
        err.decode()
        for process, (_out, err) in zip(processes, outcomes, strict=True)
        if process.returncode
    ]
    assert failures == []
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.connect() as connection:
            versions = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
        assert await migrate.status(engine) == "current"
    finally:
        await engine.dispose()
    assert len(versions) == 1
