"""contacts: crm_id unique per tenant

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 16:10:00.000000

A CRM id shared by several contacts of one tenant let one person's CRM data (job title,
phone, company) be read, and consent-checked, as another's. Which of them the CRM record
really belongs to cannot be told from the store, so every contact of such a group loses the
link (set to NULL; the CRM record itself is untouched) and can be linked again, one at a
time. A unique index rather than a constraint: SQLite adds it without rebuilding the table.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

contacts = sa.table(
    "contacts",
    sa.column("tenant_id", sa.String),
    sa.column("crm_id", sa.String),
)


def upgrade() -> None:
    # The shared pairs first, as a whole: a correlated "another row has it" would stop
    # matching on SQLite once the rows before it in the same statement were unlinked.
    shared = (
        sa.select(contacts.c.tenant_id, contacts.c.crm_id)
        .where(contacts.c.crm_id.is_not(None))
        .group_by(contacts.c.tenant_id, contacts.c.crm_id)
        .having(sa.func.count() > 1)
    )
    result = op.get_bind().execute(
        sa.update(contacts)
        .where(sa.tuple_(contacts.c.tenant_id, contacts.c.crm_id).in_(shared))
        .values(crm_id=None)
    )
    if result.rowcount:
        logger.warning(
            "unlinked %d contacts from CRM records that several contacts of a tenant shared",
            result.rowcount,
        )
    op.create_index("uq_contacts_tenant_crm_id", "contacts", ["tenant_id", "crm_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_contacts_tenant_crm_id", table_name="contacts")
