"""Checkpoints of resumable jobs (`job_checkpoints`): run again with the same parameters, a
job goes on from its position; a run with other parameters starts over."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col

from hub.sources.store import Store
from hub.store.tables import JobCheckpointRow


async def position(store: Store, job: str, parameters: str) -> str | None:
    """Where a run of `job` with `parameters` stopped, if one did."""
    async with store.sessions() as session:
        row = await session.get(JobCheckpointRow, job)
    return row.position if row is not None and row.parameters == parameters else None


async def save(store: Store, job: str, parameters: str, at: str, now: datetime) -> None:
    async with store.sessions.begin() as session:
        row = await session.get(JobCheckpointRow, job)
        if row is None:
            session.add(
                JobCheckpointRow(job=job, parameters=parameters, position=at, updated_at=now)
            )
        else:
            row.parameters, row.position, row.updated_at = parameters, at, now


async def clear(store: Store, job: str, parameters: str) -> None:
    """The run is done: its checkpoint goes, not another run's (a command stopped midway
    keeps its own while a schedule runs)."""
    async with store.sessions.begin() as session:
        await session.execute(
            delete(JobCheckpointRow)
            .where(col(JobCheckpointRow.job) == job)
            .where(col(JobCheckpointRow.parameters) == parameters)
        )
