"""row-level security on every tenant-owned table (PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SYSTEM = "current_setting('hub.system', true) = 'on'"
TENANT = "NULLIF(current_setting('hub.tenant', true), '')"
"""The bound tenant; NULL (no row's) when none is bound or it is empty."""

TENANT_OWNED = ("campaigns", "contacts", "consents", "erasures", "erasure_tasks", "audit_events")
"""Tables with a `tenant_id`: its rows are the bound tenant's. An audit event without a
tenant (an anonymous caller's) is seen in system mode only."""

POLICIES = {
    **{table: f"{SYSTEM} OR tenant_id = {TENANT}" for table in TENANT_OWNED},
    # A member row is its campaign's tenant's.
    "campaign_members": f"{SYSTEM} OR EXISTS (SELECT 1 FROM campaigns c "
    f"WHERE c.id = campaign_members.campaign_id AND c.tenant_id = {TENANT})",
}
"""Each tenant-owned table and whose rows it shows: the bound tenant's, or all in system
mode (`hub.store.tenancy`). The same condition checks rows written."""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite has no row-level security: the application's filters stand alone
    for table, visible in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        # Forced: the tables' owner (the role that migrates) is bound too.
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} FOR ALL "
            f"USING ({visible}) WITH CHECK ({visible})"
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
