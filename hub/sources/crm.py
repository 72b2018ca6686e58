"""The CRM adapter: contact enrichment (company, job title, phone) by CRM id, deletion, and
what the sync needs: the listing of what changed since a time, fresh reads, and updates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


@dataclass(frozen=True, slots=True)
class CrmContact:
    """A CRM record as the sync sees it: its synchronised fields by their name in
    `policies/sync.yaml`."""

    crm_id: str
    fields: dict[str, str | None]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CrmPage:
    contacts: list[CrmContact]
    cursor: str | None
    """Where the next page starts; None on the last page."""
    malformed: int = 0
    """Records of the page that could not be read, left out."""


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

    async def changed_since(
        self, tenant: str, since: datetime | None, *, cursor: str | None, limit: int = MAX_IDS
    ) -> CrmPage:
        """One page of the tenant's records changed at or after `since` (every record when
        None), oldest change first."""
        params = {"tenant": tenant, "limit": str(limit)}
        if since is not None:
            params["updated_since"] = since.isoformat()
        if cursor is not None:
            params["cursor"] = cursor
        page: CrmPage = await self.client.get_json("/v1/contacts", params, parse=_page(tenant))
        return page

    async def current(self, tenant: str, crm_ids: Sequence[str]) -> dict[str, CrmContact]:
        """The tenant's records as they are now, never from a cache (unknown ids left out)."""
        answers = await asyncio.gather(
            *(
                self.client.get_json("/v1/contacts", {"ids": ",".join(batch)}, parse=_page(tenant))
                for batch in shapes.chunks(list(crm_ids), MAX_IDS)
            )
        )
        return {c.crm_id: c for answer in answers for c in answer.contacts}

    async def write(self, crm_id: str, fields: Mapping[str, str | None], *, key: str) -> bool:
        """Change the record's synchronised `fields`; the CRM applies one `key` once. False
        when the CRM has no such record. The CRM does not scope an update by workspace: the
        caller makes sure the record is its tenant's first (`current`)."""
        body: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "company":
                body["organisation"] = {"name": value}
            else:
                body[_CRM_NAMES[name]] = value
        return await self.client.patch_json(
            f"/v1/contacts/{quote(crm_id, safe='')}", body, idempotency_key=key
        )

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


_CRM_NAMES = {"fullName": "name", "email": "email_address", "phone": "tel", "jobTitle": "title"}


def _page(tenant: str) -> Callable[[Any], CrmPage]:
    """A listing's parser that keeps the tenant's records only, whatever the CRM answers. A
    record it cannot read is left out and counted (`malformed`): one bad record must not
    stop a tenant's sync at its page for good."""

    def parse(payload: Any) -> CrmPage:
        contacts = []
        malformed = 0
        for item in shapes.items(payload, "contacts"):
            try:
                if shapes.text(item, "workspace") != tenant:
                    continue
                contacts.append(_contact(item))
            except (TypeError, KeyError, ValueError):
                malformed += 1
        cursor = shapes.obj(payload).get("next_cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError("next_cursor: expected a string")
        return CrmPage(contacts, cursor, malformed)

    return parse


def _contact(item: Any) -> CrmContact:
    organisation = shapes.obj(item).get("organisation")
    fields = {ours: shapes.optional_text(item, name) for ours, name in _CRM_NAMES.items()}
    fields["company"] = None if organisation is None else shapes.optional_text(organisation, "name")
    return CrmContact(
        crm_id=shapes.text(item, "contact_id"),
        fields=fields,
        updated_at=_utc(shapes.timestamp(item, "updated")),
    )


def _utc(moment: datetime) -> datetime:
    """A time the CRM gave without an offset is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
