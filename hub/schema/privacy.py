"""The data subject's rights in the schema: access log, export and erasure report."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from hub.store.tables import AuditEventRow, ErasureRow


@strawberry.type(description="One decision about a person's data: who, for what, and when.")
class AccessEvent:
    at: datetime
    principal: str | None
    client_id: str | None
    purpose: str | None
    coordinate: str
    decision: str
    reason: str | None

    @classmethod
    def from_row(cls, row: AuditEventRow) -> AccessEvent:
        return cls(
            at=row.at,
            principal=row.principal,
            client_id=row.client_id,
            purpose=row.purpose,
            coordinate=row.coordinate,
            decision=row.decision,
            reason=row.reason,
        )


@strawberry.enum
class ErasureStatus(Enum):
    ERASED = "ERASED"
    PENDING = "PENDING"
    FAILED = "FAILED"
    NOT_SUPPORTED = "NOT_SUPPORTED"


@strawberry.type
class SourceErasure:
    source: str
    status: ErasureStatus
    reason: str | None
    updated_at: datetime


@strawberry.type(description="Where the person's data was erased; failed sources are retried.")
class ErasureReport:
    contact_id: strawberry.ID
    erased_at: datetime
    erased_by: str | None
    sources: list[SourceErasure]
    complete: bool

    @classmethod
    def from_row(cls, row: ErasureRow) -> ErasureReport:
        sources = [_source(entry) for entry in row.sources]
        return cls(
            contact_id=strawberry.ID(row.contact_id),
            erased_at=row.erased_at,
            erased_by=row.erased_by,
            sources=sources,
            complete=all(
                s.status is not ErasureStatus.PENDING and s.status is not ErasureStatus.FAILED
                for s in sources
            ),
        )


def _source(entry: dict[str, Any]) -> SourceErasure:
    return SourceErasure(
        source=entry["source"],
        status=ErasureStatus(entry["status"]),
        reason=entry.get("reason"),
        updated_at=datetime.fromisoformat(entry["updated_at"]),
    )
