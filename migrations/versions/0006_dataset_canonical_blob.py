"""datasets.canonical_blob_id and canonical_index_blob_id: each dataset's canonical JSON Lines and its row index

Revision ID: 0006_dataset_canonical_blob
Revises: 0005_model_remote_code
Create Date: 2026-11-25 00:00:00

The columns come in nullable: canonicalising a file needs the app's dataset code, which migrations never import.
app.core.schema.upgrade (`lorastudio migrate`, `lorastudio up`, every start) fills them for existing datasets right
after this migration, one dataset per transaction (app.core.services.datasets.backfill_canonical).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_dataset_canonical_blob"
down_revision = "0005_model_remote_code"
branch_labels = None
depends_on = None

COLUMNS = ("canonical_blob_id", "canonical_index_blob_id")


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
            batch_op.create_foreign_key(batch_op.f(f"fk_datasets_{column}_blobs"), "blobs", [column], ["id"])


def downgrade() -> None:
    # The blobs stay: older code ignores them, and an upgrade finds them again by their content.
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_constraint(batch_op.f(f"fk_datasets_{column}_blobs"), type_="foreignkey")
            batch_op.drop_column(column)
