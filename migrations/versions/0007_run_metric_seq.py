"""runs.metric_seq: the highest metric-point seq a run has given out, a column instead of timeline JSON

Until now the counter was derived from the stored points and the "seq_floor" of each "resumed" timeline entry
(the seqs of points a resumed attempt replaced are never given out again). The backfill takes the same maximum.

Revision ID: 0007_run_metric_seq
Revises: 0006_dataset_canonical_blob
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0007_run_metric_seq"
down_revision = "0006_dataset_canonical_blob"
branch_labels = None
depends_on = None

runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("metric_seq", sa.Integer))
points = sa.table("metric_points", sa.column("run_id", sa.Integer), sa.column("seq", sa.Integer))
timeline = sa.table("run_events", sa.column("run_id", sa.Integer), sa.column("kind", sa.String),
                    sa.column("data", sa.JSON))


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metric_seq", sa.Integer(), nullable=False, server_default="0"))
    connection = op.get_bind()
    highest: dict[int, int] = dict(connection.execute(
        sa.select(points.c.run_id, sa.func.max(points.c.seq)).group_by(points.c.run_id)).all())
    for run_id, data in connection.execute(sa.select(timeline.c.run_id, timeline.c.data)
                                           .where(timeline.c.kind == "resumed")):
        data = json.loads(data) if isinstance(data, str) else (data or {})
        highest[run_id] = max(highest.get(run_id, 0), int(data.get("seq_floor", 0)))
    for run_id, seq in highest.items():
        connection.execute(sa.update(runs).where(runs.c.id == run_id).values(metric_seq=seq))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("metric_seq")
