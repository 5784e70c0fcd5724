"""the adapter registry: registered_adapters, adapter_versions (immutable, each with its own references to its
files' blobs), adapter_version_files and adapter_aliases; an evaluation may name the version it evaluates

Revision ID: 0016_adapter_registry
Revises: 0015_sample_scores
Create Date: 2026-12-09 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_adapter_registry"
down_revision = "0015_sample_scores"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_registered_adapters_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registered_adapters")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_registered_adapters_owner_id")),
    )
    op.create_index(op.f("ix_registered_adapters_owner_id"), "registered_adapters", ["owner_id"], unique=False)
    op.create_table(
        "adapter_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("base_model_id", sa.Integer(), nullable=True),
        sa.Column("base_name", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"],
            ["registered_adapters.id"],
            name=op.f("fk_adapter_versions_adapter_id_registered_adapters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name=op.f("fk_adapter_versions_base_model_id_base_models"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_adapter_versions_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_versions")),
        sa.UniqueConstraint("adapter_id", "version", name=op.f("uq_adapter_versions_adapter_id")),
    )
    op.create_index(op.f("ix_adapter_versions_adapter_id"), "adapter_versions", ["adapter_id"], unique=False)
    op.create_index(op.f("ix_adapter_versions_run_id"), "adapter_versions", ["run_id"], unique=False)
    op.create_table(
        "adapter_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["adapter_id"],
            ["registered_adapters.id"],
            name=op.f("fk_adapter_aliases_adapter_id_registered_adapters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_adapter_aliases_version_id_adapter_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_aliases")),
        sa.UniqueConstraint("adapter_id", "name", name=op.f("uq_adapter_aliases_adapter_id")),
    )
    op.create_index(op.f("ix_adapter_aliases_adapter_id"), "adapter_aliases", ["adapter_id"], unique=False)
    op.create_index(op.f("ix_adapter_aliases_version_id"), "adapter_aliases", ["version_id"], unique=False)
    op.create_table(
        "adapter_version_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_adapter_version_files_blob_id_blobs")),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_adapter_version_files_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_version_files")),
        sa.UniqueConstraint("version_id", "name", name=op.f("uq_adapter_version_files_version_id")),
    )
    op.create_index(op.f("ix_adapter_version_files_blob_id"), "adapter_version_files", ["blob_id"], unique=False)
    op.create_index(op.f("ix_adapter_version_files_version_id"), "adapter_version_files", ["version_id"], unique=False)
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("adapter_version_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_evaluations_adapter_version_id_adapter_versions"),
            "adapter_versions",
            ["adapter_version_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint(op.f("fk_evaluations_adapter_version_id_adapter_versions"), type_="foreignkey")
        batch.drop_column("adapter_version_id")
    op.drop_table("adapter_version_files")
    op.drop_table("adapter_aliases")
    op.drop_table("adapter_versions")
    op.drop_table("registered_adapters")
