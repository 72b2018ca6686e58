"""The CRM adapter: contact enrichment (company, job title, phone) by CRM id, and deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from hub.sources import shapes
from hub.sources.cache import subject_tag
from hub.sources.http import SourceClient

MAX_IDS = 100
"""The most contacts one upstream call may name."""


@dataclass(frozen=True, slots=True)
class CrmRecord:
    crm_id: str
    company: str | None
    job_title: str | None
    phone: str | None
    updated_at: datetime


class CrmLookup(Protocol):
    """Batch reads and deletion at the CRM. Failures raise `SourceUnavailable` or
    `SourceTimeout`."""

    async def contacts(
        self, tenant: str, crm_ids: Sequence[str], *, subjects: Mapping[str, str] | None = None
    ) -> dict[str, CrmRecord]:
        """The tenant's records by CRM id (unknown ids left out); `subjects` maps a CRM id to
        the own store's contact id, so that a purge of that contact drops the entry too."""
        ...

    async def delete(self, crm_id: str, *, tenant: str) -> bool:
        """Erase the tenant's contact; True once it is gone (also when it already was), False
        when the record belongs to another workspace (then nothing is deleted)."""
        ...


class CrmSource:
    """`CrmLookup` over HTTP: `GET /v1/contacts?ids=`, `DELETE /v1/contacts/{id}`, cached per
    tenant and tagged with each contact's subject tags."""

    def __init__(self, client: SourceClient) -> None:
        self.client = client

    async def contacts(
        self, tenant: str, crm_ids: Sequence[str], *, subjects: Mapping[str, str] | None = None
    ) -> dict[str, CrmRecord]:
        known = dict(subjects or {})

        async def fetch(ids: list[str]) -> Mapping[str, Any]:
            return await self._fetch(tenant, ids)

        def tags_for(crm_id: str, _value: Any) -> Iterable[str]:
            tags = [subject_tag(crm_id)]
            if crm_id in known:
                tags.append(subject_tag(known[crm_id]))
            return tags

        found = await self.client.load_many(
            "contact", crm_ids, fetch, tenant=tenant, tags_for=tags_for
        )
        return {crm_id: _from_json(value) for crm_id, value in found.items()}

    async def delete(self, crm_id: str, *, tenant: str) -> bool:
        # Look before deleting: a CRM id given by one tenant may name another's record.
        found = await self._fetch_any([crm_id])
        if crm_id in found and found[crm_id][0] != tenant:
            return False
        await self.client.delete(f"/v1/contacts/{quote(crm_id, safe='')}")
        return True

    async def _fetch_any(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        answer: dict[str, tuple[str, dict[str, Any]]] = await self.client.get_json(
            "/v1/contacts", {"ids": ",".join(ids)}, parse=_contacts
        )
        return answer

    async def _fetch(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        answers = await asyncio.gather(
            *(
                self.client.get_json("/v1/contacts", {"ids": ",".join(batch)}, parse=_contacts)
                for batch in shapes.chunks(ids, MAX_IDS)
            )
        )
        # A record of another workspace never reaches this tenant, whatever the CRM answers.
        return {
            crm_id: value
            for answer in answers
            for crm_id, (workspace, value) in answer.items()
            if workspace == tenant
        }


def _contacts(payload: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    found = {}
    for item in shapes.items(payload, "contacts"):
        organisation = shapes.obj(item).get("organisation")
        company = None if organisation is None else shapes.optional_text(organisation, "name")
        crm_id = shapes.text(item, "contact_id")
        found[crm_id] = (
            shapes.text(item, "workspace"),
            {
                "crm_id": crm_id,
                "company": company,
                "job_title": shapes.optional_text(item, "title"),
                "phone": shapes.optional_text(item, "tel"),
                "updated_at": shapes.timestamp(item, "updated").isoformat(),
            },
        )
    return found


def _from_json(value: Mapping[str, Any]) -> CrmRecord:
    return CrmRecord(
        crm_id=value["crm_id"],
        company=value["company"],
        job_title=value["job_title"],
        phone=value["phone"],
        updated_at=datetime.fromisoformat(value["updated_at"]),
    )
