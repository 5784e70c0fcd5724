"""generation_samples: the answers a run's adapter (and, at step 0, its base model) gives to a few eval prompts

One row per (run, sampling round, prompt): the base model's answers (kind "base", step 0), the adapter's at each
evaluation (kind "eval") and at the end (kind "final"), with the reference answer, the generation's seconds and the
training seconds elapsed when the round ran (the sampling cost share is computed from them). Existing runs have none.

Revision ID: 0012_generation_samples
Revises: 0011_quotas_priority
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_generation_samples"
down_revision = "0011_quotas_priority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("prompt_index", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("train_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_generation_samples_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generation_samples")),
        sa.UniqueConstraint("run_id", "kind", "step", "prompt_index",
                            name=op.f("uq_generation_samples_run_id")),
    )
    with op.batch_alter_table("generation_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_generation_samples_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("generation_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generation_samples_run_id"))
    op.drop_table("generation_samples")
