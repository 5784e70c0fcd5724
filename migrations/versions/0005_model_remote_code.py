"""base_models.trust_remote_code: an admin's per-model permission to run code shipped with the model

Revision ID: 0005_model_remote_code
Revises: 0004_users_and_ownership
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_model_remote_code"
down_revision = "0004_users_and_ownership"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trust_remote_code", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("base_models", schema=None) as batch_op:
        batch_op.drop_column("trust_remote_code")
