"""users' quotas (queued runs, running runs, storage bytes) and runs.priority, for fair scheduling

Existing users get no quota of their own (NULL: the studio default, Settings.quota_*); existing runs priority 0.

Revision ID: 0011_quotas_priority
Revises: 0010_audit_log
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_quotas_priority"
down_revision = "0010_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_queued_runs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_running_runs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("priority")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("max_storage_bytes")
        batch_op.drop_column("max_running_runs")
        batch_op.drop_column("max_queued_runs")
