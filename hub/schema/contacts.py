"""`Contact` and `Consent`: tenant-owned personal data of the own store."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from hub.context import Context
from hub.resolvers import contacts as resolvers
from hub.resolvers import influencers as influencer_resolvers
from hub.schema.consent import PersonalData
from hub.schema.influencers import Influencer
from hub.store.tables import ConsentRow, ContactRow


@strawberry.enum
class ConsentStatus(Enum):
    GRANTED = "GRANTED"
    WITHDRAWN = "WITHDRAWN"
    EXPIRED = "EXPIRED"


@strawberry.enum
class LawfulBasis(Enum):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"


@strawberry.type(description="One consent event; the list is the full history, oldest first.")
class Consent:
    id: strawberry.ID
    purpose: str
    status: ConsentStatus
    lawful_basis: LawfulBasis
    granted_at: datetime | None
    withdrawn_at: datetime | None
    expires_at: datetime | None
    recorded_at: datetime
    contact_id: strawberry.Private[str]
    recorded_source: strawberry.Private[str]
    recorded_evidence: strawberry.Private[str | None]

    # Free text that may name the person: personal data of the consent's contact.
    @strawberry.field(
        extensions=[PersonalData(subject="contact_id")],
        description="Where the consent was given; null without a basis for your purpose.",
    )
    async def source(self) -> str | None:
        return self.recorded_source

    @strawberry.field(extensions=[PersonalData(subject="contact_id")])
    async def evidence(self) -> str | None:
        return self.recorded_evidence

    @classmethod
    def from_row(cls, row: ConsentRow, *, now: datetime) -> Consent:
        expired = row.status == "GRANTED" and row.expires_at is not None and row.expires_at <= now
        return cls(
            id=strawberry.ID(row.id),
            purpose=row.purpose,
            status=ConsentStatus.EXPIRED if expired else ConsentStatus(row.status),
            lawful_basis=LawfulBasis(row.lawful_basis),
            granted_at=row.granted_at,
            withdrawn_at=row.withdrawn_at,
            expires_at=row.expires_at,
            recorded_at=row.recorded_at,
            contact_id=row.contact_id,
            recorded_source=row.source,
            recorded_evidence=row.evidence,
        )


@strawberry.federation.type(keys=["id"])
class Contact:
    id: strawberry.ID
    role: str | None
    stored_company: strawberry.Private[str | None]
    personal_name: strawberry.Private[str | None]
    personal_email: strawberry.Private[str | None]
    personal_phone: strawberry.Private[str | None]
    stored_job_title: strawberry.Private[str | None]
    crm_id: strawberry.Private[str | None]
    influencer_id: strawberry.Private[str | None]

    @strawberry.field(extensions=[PersonalData()])
    async def full_name(self) -> str | None:
        return self.personal_name

    @strawberry.field(extensions=[PersonalData()])
    async def email(self) -> str | None:
        return self.personal_email

    @strawberry.field(extensions=[PersonalData()], description="Falls back to the CRM's.")
    async def phone(self, info: Info[Context, None]) -> str | None:
        if self.personal_phone is not None:
            return self.personal_phone
        record = await resolvers.crm_record(info.context, self.crm_id, self.id)
        return None if record is None else record.phone

    @strawberry.field(description="The own store's value, else the CRM's.")
    async def company(self, info: Info[Context, None]) -> str | None:
        if self.stored_company is not None:
            return self.stored_company
        record = await resolvers.crm_record(info.context, self.crm_id, self.id)
        return None if record is None else record.company

    @strawberry.field(
        extensions=[PersonalData()], description="The own store's value, else the CRM's."
    )
    async def job_title(self, info: Info[Context, None]) -> str | None:
        if self.stored_job_title is not None:
            return self.stored_job_title
        record = await resolvers.crm_record(info.context, self.crm_id, self.id)
        return None if record is None else record.job_title

    @classmethod
    def from_row(cls, row: ContactRow) -> Contact:
        return cls(
            id=strawberry.ID(row.id),
            role=row.role,
            stored_company=row.company,
            personal_name=row.full_name,
            personal_email=row.email,
            personal_phone=row.phone,
            stored_job_title=row.job_title,
            crm_id=row.crm_id,
            influencer_id=row.influencer_id,
        )

    @classmethod
    async def resolve_reference(
        cls, info: Info[Context, None], id: strawberry.ID
    ) -> Contact | None:
        row = await resolvers.contact(info.context, id)
        return None if row is None else cls.from_row(row)

    @strawberry.field
    async def influencer(self, info: Info[Context, None]) -> Influencer | None:
        if self.influencer_id is None:
            return None
        row = await influencer_resolvers.influencer(info.context, self.influencer_id)
        return None if row is None else Influencer.from_row(row)

    @strawberry.field
    async def consents(self, info: Info[Context, None]) -> list[Consent]:
        rows = await resolvers.consents(info.context, self.id)
        now = datetime.now(UTC)
        return [Consent.from_row(row, now=now) for row in rows]


@strawberry.input(description="Without `id`, a contact with the same email is updated if any.")
class ContactInput:
    id: strawberry.ID | None = None
    influencer_id: strawberry.ID | None = None
    crm_id: str | None = None
    role: str | None = None
    company: str | None = None
    full_name: str | None = None
    email: str | None = None
    phone: str | None = None
