"""generation_samples.score: a sampled answer checked by its prompt's scorer (1 or 0; null without one)

Revision ID: 0015_sample_scores
Revises: 0014_evaluation_lifecycle
Create Date: 2026-12-08 00:00:01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_sample_scores"
down_revision = "0014_evaluation_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generation_samples") as batch:
        batch.add_column(sa.Column("score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generation_samples") as batch:
        batch.drop_column("score")
