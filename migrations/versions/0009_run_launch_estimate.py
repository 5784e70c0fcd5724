"""runs.estimate: the time estimate a run was queued with, to set beside how long it took

Runs queued before this revision have none (NULL): their page shows only how long they took.

Revision ID: 0009_run_launch_estimate
Revises: 0008_analysis_system_prompt
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_run_launch_estimate"
down_revision = "0008_analysis_system_prompt"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("estimate", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("estimate")
