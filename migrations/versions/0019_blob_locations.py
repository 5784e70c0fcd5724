"""blobs.location and blobs.object_key: a blob's bytes may live in an S3-compatible object store (its metadata stays
here); every existing blob is in the database

Revision ID: 0019_blob_locations
Revises: 0018_run_device_class
Create Date: 2026-12-12 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_blob_locations"
down_revision = "0018_run_device_class"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("location", sa.String(length=8), nullable=False, server_default="db"))
        batch.add_column(sa.Column("object_key", sa.String(length=512), nullable=True))
        batch.create_unique_constraint(batch.f("uq_blobs_object_key"), ["object_key"])


def downgrade() -> None:
    # Blobs whose bytes are in the object store cannot be described without these columns: refuse rather than
    # leave rows that claim to be in the database with no chunks.
    if op.get_bind().scalar(sa.text("SELECT count(*) FROM blobs WHERE location <> 'db'")):
        raise RuntimeError("blobs are stored in the object store; downgrading would lose where their bytes are")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_constraint(batch.f("uq_blobs_object_key"), type_="unique")
        batch.drop_column("object_key")
        batch.drop_column("location")
