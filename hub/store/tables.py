"""SQLModel tables of the own store; every name ends in `Row`."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.ids import new_id


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime
    status: str = Field(default="active", max_length=20)
    """`active`, `suspended` (its tokens are refused on every path) or `deleted` (refused too,
    its data erased: `hub tenants delete`)."""


class InfluencerRow(SQLModel, table=True):
    __tablename__ = "influencers"

    id: str = Field(primary_key=True, max_length=40)
    handle: str = Field(max_length=100, unique=True)
    display_name: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=2, index=True)
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime


class PlatformAccountRow(SQLModel, table=True):
    __tablename__ = "platform_accounts"
    __table_args__ = (UniqueConstraint("platform", "username"),)

    id: str = Field(primary_key=True, max_length=40)
    influencer_id: str = Field(foreign_key="influencers.id", index=True, max_length=40)
    platform: str = Field(max_length=20)
    username: str = Field(max_length=100)
    external_id: str = Field(max_length=64)


class CampaignRow(SQLModel, table=True):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_tenant_status", "tenant_id", "status"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    brand: str = Field(max_length=200)
    status: str = Field(max_length=20)
    objective: str | None = Field(default=None, max_length=500)
    budget_minor: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    currency: str | None = Field(default=None, max_length=3)
    starts_on: date | None = None
    ends_on: date | None = None
    created_at: datetime
    updated_at: datetime


class CampaignMemberRow(SQLModel, table=True):
    __tablename__ = "campaign_members"
    __table_args__ = (UniqueConstraint("campaign_id", "influencer_id"),)

    id: str = Field(primary_key=True, max_length=40)
    campaign_id: str = Field(foreign_key="campaigns.id", index=True, max_length=40)
    influencer_id: str = Field(foreign_key="influencers.id", index=True, max_length=40)
    fee_minor: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    currency: str | None = Field(default=None, max_length=3)
    status: str = Field(max_length=20)
    deliverables: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime


class ContactRow(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email_normalized"),
        # One contact per CRM record in a tenant: the record's data is that person's alone.
        Index("uq_contacts_tenant_crm_id", "tenant_id", "crm_id", unique=True),
        Index("ix_contacts_tenant_phone_e164", "tenant_id", "phone_e164"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    influencer_id: str | None = Field(
        default=None, foreign_key="influencers.id", index=True, max_length=40
    )
    crm_id: str | None = Field(default=None, max_length=64, index=True)
    role: str | None = Field(default=None, max_length=100)
    company: str | None = Field(default=None, max_length=200)
    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    email_normalized: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    phone_e164: str | None = Field(default=None, max_length=20)
    """`phone` in E.164 (`+48221234567`), what two numbers are compared in; None when
    `phone` is not a number."""
    job_title: str | None = Field(default=None, max_length=200)
    crm_base: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The synchronised fields as the hub and the CRM last agreed on them (None before the
    first sync): a field that differs from it here changed in the hub, one that differs
    at the CRM changed there, and both is a conflict."""
    crm_synced_at: datetime | None = None
    field_changed_at: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    """When each synchronised field's value last changed here (ISO 8601), for `newest`."""
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = None

    def synced(self) -> dict[str, Any]:
        """The synchronised fields, by their names in `policies/sync.yaml`."""
        return {name: getattr(self, column) for name, column in SYNCED_COLUMNS.items()}

    def stamp_changes(self, before: dict[str, Any], at: datetime) -> None:
        """Record `at` as the change time of each synchronised field `before` differs in."""
        now = self.synced()
        stamps = dict(self.field_changed_at or {})
        stamps.update({name: at.isoformat() for name in now if now[name] != before.get(name)})
        self.field_changed_at = stamps


SYNCED_COLUMNS = {
    "fullName": "full_name",
    "email": "email",
    "phone": "phone",
    "company": "company",
    "jobTitle": "job_title",
}
"""The contact columns a CRM sync keeps alike, by their field names in `policies/sync.yaml`."""


class ConsentRow(SQLModel, table=True):
    """One consent event; history is kept by adding rows, never by overwriting them."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_contact_purpose", "contact_id", "purpose"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=64)
    contact_id: str = Field(foreign_key="contacts.id", max_length=40)
    purpose: str = Field(max_length=64)
    status: str = Field(max_length=20)
    lawful_basis: str = Field(max_length=32)
    granted_at: datetime | None = None
    withdrawn_at: datetime | None = None
    expires_at: datetime | None = None
    source: str = Field(max_length=200)
    evidence: str | None = Field(default=None, max_length=2000)
    recorded_at: datetime

    def withdrawal(self, *, at: datetime, source: str, evidence: str | None) -> ConsentRow:
        """The WITHDRAWN event that ends this grant at `at`, recorded from `source`."""
        return ConsentRow(
            id=new_id("consent"),
            tenant_id=self.tenant_id,
            contact_id=self.contact_id,
            purpose=self.purpose,
            status="WITHDRAWN",
            lawful_basis=self.lawful_basis,
            granted_at=self.granted_at,
            withdrawn_at=at,
            expires_at=self.expires_at,
            source=source,
            evidence=evidence,
            recorded_at=at,
        )


class AuditEventRow(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_subject_at", "subject", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    tenant_id: str | None = Field(default=None, max_length=64)
    principal: str | None = Field(default=None, max_length=200)
    client_id: str | None = Field(default=None, max_length=200)
    purpose: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=64)
    coordinate: str = Field(max_length=200)
    decision: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=500)


class IdempotencyRow(SQLModel, table=True):
    """The first answer to a mutation sent with an `Idempotency-Key`."""

    __tablename__ = "idempotency_keys"

    key: str = Field(primary_key=True, max_length=300)
    request_hash: str = Field(max_length=64)
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime


class IdempotencySubjectRow(SQLModel, table=True):
    """A person (contact) named by a kept answer: an erasure replaces those answers."""

    __tablename__ = "idempotency_subjects"

    key: str = Field(primary_key=True, max_length=300)
    subject: str = Field(primary_key=True, max_length=40, index=True)


class ErasureRow(SQLModel, table=True):
    """The tombstone of an erased contact: hashes only, so syncs cannot bring it back."""

    __tablename__ = "erasures"

    contact_id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(index=True, max_length=64)
    erased_at: datetime
    erased_by: str | None = Field(default=None, max_length=200)
    email_hash: str | None = Field(default=None, max_length=64, index=True)
    crm_hash: str | None = Field(default=None, max_length=64, index=True)
    sources: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


class ErasureTaskRow(SQLModel, table=True):
    """An upstream deletion still to be done; retried until the source confirms it."""

    __tablename__ = "erasure_tasks"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(index=True, max_length=40)
    tenant_id: str = Field(max_length=64)
    source: str = Field(max_length=32)
    upstream_id: str = Field(max_length=64)
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = Field(default=None, max_length=500)


class JobLeaseRow(SQLModel, table=True):
    """Which process runs a background job until when: one replica at a time runs each."""

    __tablename__ = "job_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=64)
    expires_at: datetime


class WebhookEventRow(SQLModel, table=True):
    """An event a source pushed (`POST /webhooks/{source}`), kept from before its answer
    until it is processed: its id is unique per source, so a redelivery changes nothing."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("source", "signature"),)

    source: str = Field(primary_key=True, max_length=20)
    event_id: str = Field(primary_key=True, max_length=200)
    signature: str = Field(max_length=64)
    """A digest of the delivery's signature: a signed delivery replayed under another event
    id is the same delivery."""
    type: str = Field(max_length=100)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    sent_at: datetime
    """The sender's `X-Hub-Timestamp`: what came later wins when deliveries are reordered."""
    received_at: datetime
    processed_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    next_attempt_at: datetime
    claimed_until: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    abandoned_at: datetime | None = None
    """Set when it failed `MAX_ATTEMPTS` times: never retried again."""


class MetricDayRow(SQLModel, table=True):
    """One social account's figures for one day, as the social API last told them."""

    __tablename__ = "metric_days"

    external_id: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    impressions: int = Field(sa_column=Column(BigInteger, nullable=False))
    reach: int = Field(sa_column=Column(BigInteger, nullable=False))
    likes: int = Field(sa_column=Column(BigInteger, nullable=False))
    comments: int = Field(sa_column=Column(BigInteger, nullable=False))
    shares: int = Field(sa_column=Column(BigInteger, nullable=False))
    saves: int = Field(sa_column=Column(BigInteger, nullable=False))
    video_views: int = Field(sa_column=Column(BigInteger, nullable=False))
    clicks: int = Field(sa_column=Column(BigInteger, nullable=False))
    conversions: int = Field(sa_column=Column(BigInteger, nullable=False))
    spend_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    observed_at: datetime
    """When the source stated these figures; an older statement never replaces a newer one."""
    updated_at: datetime = Field(index=True)


class JobCheckpointRow(SQLModel, table=True):
    """How far a resumable job got (ingestion, sync): run again with the same parameters,
    it goes on from `position`; a run with other parameters starts over."""

    __tablename__ = "job_checkpoints"

    job: str = Field(primary_key=True, max_length=64)
    parameters: str = Field(max_length=500)
    position: str = Field(max_length=200)
    updated_at: datetime


class CrmOutboxRow(SQLModel, table=True):
    """A change the hub owns, still to be written to the CRM; kept in the transaction that
    made it, sent (`Idempotency-Key: <key>`) until the CRM takes it, then deleted."""

    __tablename__ = "crm_outbox"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=40, unique=True)
    """Never used for another change (ids of deleted rows may come back; keys do not)."""
    tenant_id: str = Field(index=True, max_length=64)
    contact_id: str = Field(index=True, max_length=40)
    crm_id: str = Field(max_length=64)
    fields: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """The synchronised fields to write, by their name in `policies/sync.yaml`."""
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime = Field(index=True)
    claimed_until: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)


class SyncStateRow(SQLModel, table=True):
    """Where a tenant's sync with a source stands, and what it has done so far."""

    __tablename__ = "sync_states"

    tenant_id: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=20)
    watermark: datetime | None = None
    """The source's `updated` of the newest change applied by a complete run: the next
    incremental run lists from there."""
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    """When the last complete run started: the hub holds every change made before it."""
    last_error: str | None = Field(default=None, max_length=500)
    imported: int = 0
    updated: int = 0
    conflicts: int = 0
    failures: int = 0
    skipped_erased: int = 0


class SyncConflictRow(SQLModel, table=True):
    """A field both systems changed since they last agreed, and which side won by
    `policies/sync.yaml`; no value is kept (they are personal data)."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_tenant_at", "tenant_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=64)
    contact_id: str = Field(max_length=40, index=True)
    source: str = Field(max_length=20)
    field: str = Field(max_length=40)
    rule: str = Field(max_length=10)
    winner: str = Field(max_length=10)
    at: datetime
