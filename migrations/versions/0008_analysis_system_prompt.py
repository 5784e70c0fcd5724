"""dataset_analyses.system_prompt: the doctor renders chats with a run's data.system_prompt, part of what an
analysis is reused for (null: the chat template's own behaviour, as every analysis before this revision)

Revision ID: 0008_analysis_system_prompt
Revises: 0007_run_metric_seq
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_analysis_system_prompt"
down_revision = "0007_run_metric_seq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("system_prompt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_analyses", schema=None) as batch_op:
        batch_op.drop_column("system_prompt")
