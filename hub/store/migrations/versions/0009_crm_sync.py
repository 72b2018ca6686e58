"""CRM sync: synchronised contact fields, the outbox, sync state and conflicts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SYNCED = ("crm_outbox", "sync_states", "sync_conflicts")
"""Tenant-owned: row-level security as in 0008 (its conditions, repeated: a migration stays
as it was written)."""
VISIBLE = (
    "current_setting('hub.system', true) = 'on' "
    "OR tenant_id = NULLIF(current_setting('hub.tenant', true), '')"
)


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_e164", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("job_title", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("crm_base", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("crm_synced_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("field_changed_at", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_contacts_tenant_phone_e164", ["tenant_id", "phone_e164"], unique=False
        )
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("crm_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_crm_outbox_tenant_id", ["tenant_id"], unique=False)
        batch_op.create_index("ix_crm_outbox_contact_id", ["contact_id"], unique=False)
        batch_op.create_index("ix_crm_outbox_next_attempt_at", ["next_attempt_at"], unique=False)
    op.create_table(
        "sync_states",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("conflicts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("skipped_erased", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "source"),
    )
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("field", sa.String(length=40), nullable=False),
        sa.Column("rule", sa.String(length=10), nullable=False),
        sa.Column("winner", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_conflicts", schema=None) as batch_op:
        batch_op.create_index("ix_sync_conflicts_tenant_at", ["tenant_id", "at"], unique=False)
        batch_op.create_index("ix_sync_conflicts_contact_id", ["contact_id"], unique=False)
    if op.get_context().dialect.name == "postgresql":
        for table in SYNCED:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY tenant_isolation ON {table} FOR ALL "
                f"USING ({VISIBLE}) WITH CHECK ({VISIBLE})"
            )


def downgrade() -> None:
    op.drop_table("sync_conflicts")
    op.drop_table("sync_states")
    op.drop_table("crm_outbox")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_tenant_phone_e164")
        batch_op.drop_column("field_changed_at")
        batch_op.drop_column("crm_synced_at")
        batch_op.drop_column("crm_base")
        batch_op.drop_column("job_title")
        batch_op.drop_column("phone_e164")
