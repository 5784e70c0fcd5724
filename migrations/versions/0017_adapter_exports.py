"""exports of a registered adapter version: adapter_exports (a job's lifecycle, its report) and adapter_export_files
(its verified files on the blob store)

Revision ID: 0017_adapter_exports
Revises: 0016_adapter_registry
Create Date: 2026-12-10 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_adapter_exports"
down_revision = "0016_adapter_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "adapter_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["adapter_versions.id"],
            name=op.f("fk_adapter_exports_version_id_adapter_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_exports")),
    )
    op.create_index(op.f("ix_adapter_exports_version_id"), "adapter_exports", ["version_id"], unique=False)
    live = "status IN ('queued', 'running', 'succeeded')"
    op.create_index("uq_adapter_exports_live", "adapter_exports", ["version_id", "format"], unique=True,
                    sqlite_where=sa.text(live), postgresql_where=sa.text(live))
    op.create_table(
        "adapter_export_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_adapter_export_files_blob_id_blobs")),
        sa.ForeignKeyConstraint(
            ["export_id"],
            ["adapter_exports.id"],
            name=op.f("fk_adapter_export_files_export_id_adapter_exports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapter_export_files")),
        sa.UniqueConstraint("export_id", "name", name=op.f("uq_adapter_export_files_export_id")),
    )
    op.create_index(op.f("ix_adapter_export_files_blob_id"), "adapter_export_files", ["blob_id"], unique=False)
    op.create_index(op.f("ix_adapter_export_files_export_id"), "adapter_export_files", ["export_id"], unique=False)


def downgrade() -> None:
    op.drop_table("adapter_export_files")
    op.drop_table("adapter_exports")
