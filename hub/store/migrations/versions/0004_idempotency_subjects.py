"""the people named by kept idempotent answers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 16:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_subjects",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("key", "subject"),
    )
    with op.batch_alter_table("idempotency_subjects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_subjects_subject"), ["subject"], unique=False
        )
    # Keys are now hashes of the caller's claims and the header; answers kept under the old
    # form could never be replayed again, so they go.
    op.execute(sa.text("DELETE FROM idempotency_keys"))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_subjects_subject"))
    op.drop_table("idempotency_subjects")
