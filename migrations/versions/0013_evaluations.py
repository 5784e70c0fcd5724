"""evaluations and their examples: a model (or an adapter beside its base) scored on an eval set

Revision ID: 0013_evaluations
Revises: 0012_generation_samples
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_evaluations"
down_revision = "0012_generation_samples"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("base_model_id", sa.Integer(), nullable=True),
        sa.Column("base_name", sa.String(length=200), nullable=False),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("general_dataset_id", sa.Integer(), nullable=True),
        sa.Column("scorers", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_evaluations_owner_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_evaluations_run_id_runs"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["base_model_id"], ["base_models.id"],
                                name=op.f("fk_evaluations_base_model_id_base_models"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_evaluations_dataset_id_datasets"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["general_dataset_id"], ["datasets.id"],
                                name=op.f("fk_evaluations_general_dataset_id_datasets"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(op.f("ix_evaluations_owner_id"), "evaluations", ["owner_id"])
    op.create_index(op.f("ix_evaluations_run_id"), "evaluations", ["run_id"])
    op.create_index(op.f("ix_evaluations_dataset_id"), "evaluations", ["dataset_id"])
    op.create_table(
        "evaluation_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.String(length=10), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("base_output", sa.Text(), nullable=False),
        sa.Column("adapter_output", sa.Text(), nullable=True),
        sa.Column("adapter_sha256", sa.String(length=64), nullable=True),
        sa.Column("base_scores", sa.JSON(), nullable=False),
        sa.Column("adapter_scores", sa.JSON(), nullable=False),
        sa.Column("flip", sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"],
                                name=op.f("fk_evaluation_examples_evaluation_id_evaluations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_examples")),
    )
    op.create_index(op.f("ix_evaluation_examples_evaluation_id"), "evaluation_examples", ["evaluation_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_evaluation_examples_evaluation_id"), table_name="evaluation_examples")
    op.drop_table("evaluation_examples")
    op.drop_index(op.f("ix_evaluations_dataset_id"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_run_id"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_owner_id"), table_name="evaluations")
    op.drop_table("evaluations")
