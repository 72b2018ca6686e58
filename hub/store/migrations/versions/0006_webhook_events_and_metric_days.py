"""webhook events kept until processed; daily metrics of social accounts; job checkpoints

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source", "event_id"),
        sa.UniqueConstraint("source", "signature"),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_events_processed_at"), ["processed_at"], unique=False
        )
    counters = (
        "impressions",
        "reach",
        "likes",
        "comments",
        "shares",
        "saves",
        "video_views",
        "clicks",
        "conversions",
        "spend_minor",
    )
    op.create_table(
        "metric_days",
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in counters),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("external_id", "day"),
    )
    with op.batch_alter_table("metric_days", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metric_days_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "job_checkpoints",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.String(length=500), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job"),
    )


def downgrade() -> None:
    op.drop_table("job_checkpoints")
    with op.batch_alter_table("metric_days", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metric_days_updated_at"))
    op.drop_table("metric_days")
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_events_processed_at"))
    op.drop_table("webhook_events")
