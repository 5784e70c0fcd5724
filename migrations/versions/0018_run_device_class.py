"""runs.device_class (the class of worker a run is routed to, kept on requeue) and runs.resolved (its "auto"
choices as its first attempt resolved them)

Revision ID: 0018_run_device_class
Revises: 0017_adapter_exports
Create Date: 2026-12-11 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_run_device_class"
down_revision = "0017_adapter_exports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("device_class", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("resolved", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resolved")
        batch.drop_column("device_class")
