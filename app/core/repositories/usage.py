"""Who still uses a dataset, a base model or a blob: the queries that guard deletes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.core.models import (
    AdapterExport,
    AdapterExportFile,
    AdapterVersionFile,
    Artifact,
    Blob,
    Dataset,
    DatasetAnalysis,
    Run,
    RunStatus,
    User,
)
from app.core.models.blob import PENDING_PREFIX

# Every state that is not an end state counts as live (queued, parked, running, and any added later).
FINISHED_RUNS = tuple(status for status in RunStatus if status.finished)
ACTIVE_ANALYSES = ("queued", "running")


def runs_using(session: Session, column: InstrumentedAttribute[int], object_id: int, *, active: bool) -> Sequence[int]:
    """Ids of the runs whose `column` (Run.dataset_id, Run.base_model_id) is object_id: queued or running ones when
    active, else the finished ones; locked FOR UPDATE (PostgreSQL), so none changes state before the delete."""
    statuses = Run.status.not_in(FINISHED_RUNS) if active else Run.status.in_(FINISHED_RUNS)
    query = select(Run.id).where(column == object_id, statuses).order_by(Run.id).with_for_update()
    return session.scalars(query).all()


def run_status(session: Session, run_id: int) -> str | None:
    """A run's status read fresh, or None when it is gone."""
    return session.scalar(select(Run.status).where(Run.id == run_id))


def active_analyses(session: Session, column: InstrumentedAttribute[int], object_id: int) -> Sequence[int]:
    """Ids of the queued or running dataset analyses whose `column` is object_id."""
    query = select(DatasetAnalysis.id).where(column == object_id, DatasetAnalysis.status.in_(ACTIVE_ANALYSES))
    return session.scalars(query.order_by(DatasetAnalysis.id)).all()


def dataset_blob_ids(dataset: Dataset) -> list[int]:
    """The blobs a dataset points to: its upload, canonical rows and their index."""
    return [b for b in (dataset.blob_id, dataset.canonical_blob_id, dataset.canonical_index_blob_id) if b is not None]


def run_blob_ids(session: Session, run_id: int) -> list[int]:
    """The blobs a run's artifacts (adapter files, checkpoints) point to."""
    return sorted(set(session.scalars(select(Artifact.blob_id).where(Artifact.run_id == run_id)).all()))


def export_blob_ids(session: Session, version_id: int) -> list[int]:
    """The blobs the exports of a registered version point to."""
    query = (select(AdapterExportFile.blob_id).join(AdapterExport, AdapterExport.id == AdapterExportFile.export_id)
             .where(AdapterExport.version_id == version_id))
    return sorted(set(session.scalars(query).all()))


def admin_count(session: Session) -> int:
    """How many admins there are; their rows are locked (PostgreSQL), so two deletes cannot remove the last two."""
    return len(session.scalars(select(User.id).where(User.is_admin.is_(True)).with_for_update()).all())


def blob_unused() -> ColumnElement[bool]:
    """True for a blob no dataset, artifact, registered version or export points to (the one list of the tables that
    hold blob ids)."""
    by_dataset = or_(Dataset.blob_id == Blob.id, Dataset.canonical_blob_id == Blob.id,
                     Dataset.canonical_index_blob_id == Blob.id)
    # A placeholder (app.core.blob_staging) is still being written or adopted: never garbage yet.
    staged = Blob.sha256.startswith(PENDING_PREFIX)
    by_version = exists().where(AdapterVersionFile.blob_id == Blob.id)  # a registered version keeps its files
    by_export = exists().where(AdapterExportFile.blob_id == Blob.id)  # an export's verified files
    return (~staged & ~exists().where(Artifact.blob_id == Blob.id) & ~exists().where(by_dataset) & ~by_version
            & ~by_export)
