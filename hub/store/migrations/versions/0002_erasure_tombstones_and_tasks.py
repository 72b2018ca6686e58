"""erasure tombstones and tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:54:40.709902
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "erasure_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("upstream_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("erasure_tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_erasure_tasks_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "erasures",
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(length=200), nullable=True),
        sa.Column("email_hash", sa.String(length=64), nullable=True),
        sa.Column("crm_hash", sa.String(length=64), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasures_crm_hash"), ["crm_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_erasures_email_hash"), ["email_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_erasures_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasures_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_erasures_email_hash"))
        batch_op.drop_index(batch_op.f("ix_erasures_crm_hash"))

    op.drop_table("erasures")
    with op.batch_alter_table("erasure_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_tasks_contact_id"))

    op.drop_table("erasure_tasks")
