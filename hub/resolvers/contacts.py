"""Reads of contacts and their consents, and `upsertContact` deduplicated by email."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.context import Context
from hub.crm_sync import queue_write_back
from hub.erasure import is_tombstoned
from hub.errors import BadUserInput, Forbidden, NotFound
from hub.ids import is_id
from hub.phones import e164
from hub.policy.rows import RowScope
from hub.resolvers.campaigns import has_control_characters, text
from hub.resolvers.influencers import check_influencer_id
from hub.sources.crm import CrmRecord
from hub.sources.store import DuplicateRow, MissingParent
from hub.store.tables import ConsentRow, ContactRow

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{5,24}$")
_TEXT_FIELDS = (
    ("crm_id", "crmId", 64),
    ("role", "role", 100),
    ("company", "company", 200),
    ("full_name", "fullName", 200),
)


@dataclass(frozen=True, slots=True)
class ContactFields:
    """`upsertContact` input as given; None means not given."""

    id: str | None = None
    influencer_id: str | None = None
    crm_id: str | None = None
    role: str | None = None
    company: str | None = None
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None


def check_contact_id(value: str, *, argument: str = "id") -> str:
    if not is_id("contact", value):
        raise BadUserInput(f"`{argument}` is not a contact id.", argument=argument)
    return value


def normalise_email(email: str) -> str:
    """The form two addresses are compared in: trimmed and lower-cased."""
    return email.strip().lower()


async def contact(context: Context, contact_id: str) -> ContactRow | None:
    context.require_scope()
    row: ContactRow | None = await context.loaders.contact_by_id.load(check_contact_id(contact_id))
    return row


async def contacts_of_influencer(context: Context, influencer_id: str) -> list[ContactRow]:
    context.require_scope()
    rows: list[ContactRow] = await context.loaders.contacts_by_influencer.load(influencer_id)
    return rows


async def crm_record(context: Context, crm_id: str | None, contact_id: str) -> CrmRecord | None:
    """The CRM's enrichment of one contact of the caller's tenant, batched across the request."""
    if crm_id is None:
        return None
    context.require_scope()
    record: CrmRecord | None = await context.loaders.crm_record_by_contact.load(
        (crm_id, contact_id)
    )
    return record


async def consents(context: Context, contact_id: str) -> list[ConsentRow]:
    rows: list[ConsentRow] = await context.loaders.consents_by_contact.load(contact_id)
    return rows


async def upsert_contact(context: Context, fields: ContactFields) -> ContactRow:
    scope = context.require_scope()
    values = _contact_values(fields)
    if fields.id is not None:
        check_contact_id(fields.id, argument="input.id")
        # Said first, before what the other fields would be refused for; the store's write
        # is what holds it (see `Store.writing_contact`).
        existing = await context.loaders.contact_by_id.load(fields.id)
        if existing is None or existing.erased_at is not None:
            raise NotFound("No contact with this id.", argument="input.id")
    elif not values.get("email_normalized"):
        raise BadUserInput("A new contact needs an `email`.", argument="input.email")
    if fields.influencer_id is not None:
        check_influencer_id(fields.influencer_id, argument="input.influencerId")
        if await context.loaders.influencer_by_id.load(
            fields.influencer_id
        ) is None or not await context.store.influencer_in_scope(scope, fields.influencer_id):
            raise NotFound("No influencer with this id.", argument="input.influencerId")
    elif fields.id is None and scope.campaigns is not None:
        raise BadUserInput(
            "A token limited to some campaigns must link a new contact to an influencer "
            "of those campaigns.",
            argument="input.influencerId",
        )
    if await is_tombstoned(
        context.store,
        scope.tenant,
        email=values.get("email_normalized"),
        crm_id=values.get("crm_id"),
    ):
        raise _unavailable(scope, None)
    try:
        now = datetime.now(UTC)
        sync = context.sync

        def write_back(session: AsyncSession, row: ContactRow, before: dict[str, Any]) -> None:
            if sync is not None:
                queue_write_back(session, sync, row, before, now)

        row = await context.store.upsert_contact(
            scope, fields.id, values, now=now, on_written=write_back
        )
    except DuplicateRow as clash:
        raise _unavailable(scope, clash.key) from None
    except MissingParent:
        raise Forbidden("Your token's tenant is not known to the hub.") from None
    if row is None:
        raise NotFound("No contact with this id.", argument="input.id")
    context.loaders.contact_by_id.clear(row.id).prime(row.id, row)
    if "crm_id" in values:
        # CRM entries are kept under the contact that asked for them: the CRM record this
        # contact held, and the one it holds now, are read afresh and kept under it.
        await context.forget_subject(row.id)
        if row.crm_id is not None:
            await context.forget_subject(row.crm_id)
    return row


def _unavailable(scope: RowScope, key: str | None) -> BadUserInput:
    """The refusal of an email or CRM id that a person of the tenant holds or held (`key`
    None: an erased person). A caller limited to some campaigns learns only that what it gave
    is not available to it: not which of the two, not whether a contact outside its
    campaigns holds it, not whether an erased person did."""
    if scope.campaigns is not None:
        return BadUserInput(
            "This email or CRM id is not available to your token.", argument="input"
        )
    if key == "crm_id":
        return BadUserInput(
            "Another contact of this tenant has this CRM id.", argument="input.crmId"
        )
    if key == "email":
        return BadUserInput(
            "Another contact of this tenant has this email.", argument="input.email"
        )
    return BadUserInput("This person was erased; their data is not stored again.", argument="input")


def _contact_values(fields: ContactFields) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, name, limit in _TEXT_FIELDS:
        given = getattr(fields, key)
        if given is not None:
            values[key] = text(given, argument=f"input.{name}", max_length=limit, required=False)
    if fields.influencer_id is not None:
        values["influencer_id"] = fields.influencer_id
    if fields.email is not None:
        email = fields.email.strip()
        normalised = normalise_email(email)
        if (
            max(len(email), len(normalised)) > 320
            or has_control_characters(email)
            or not _EMAIL.fullmatch(email)
        ):
            raise BadUserInput("`email` is not an email address.", argument="input.email")
        values["email"] = email
        values["email_normalized"] = normalised
    if fields.phone is not None:
        phone = fields.phone.strip()
        if not _PHONE.fullmatch(phone):
            raise BadUserInput("`phone` is not a phone number.", argument="input.phone")
        values["phone"] = phone
        values["phone_e164"] = e164(phone)
    return values
