"""Queries on the files runs store (adapters, checkpoints), and on the blobs only such files used."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from app.core.models import Artifact, Blob, Dataset

CHECKPOINT = "checkpoint"


def checkpoint_name(step: int, relative: str) -> str:
    """A checkpoint file's artifact name: the trainer's folder name, then the file (step-000040/rng.json)."""
    return f"step-{step:06d}/{relative}"


def checkpoint_step(name: str) -> int:
    """The step in a checkpoint artifact's name."""
    return int(name.split("/", 1)[0].removeprefix("step-"))


def of_kind(session: Session, run_id: int, kind: str) -> Sequence[Artifact]:
    """A run's stored files of one kind, by name."""
    query = select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind).order_by(Artifact.name)
    return session.scalars(query).all()


def latest_checkpoint(session: Session, run_id: int) -> tuple[int, list[Artifact]] | None:
    """(step, files) of a run's newest stored checkpoint, or None."""
    files = of_kind(session, run_id, CHECKPOINT)
    if not files:
        return None
    step = max(checkpoint_step(a.name) for a in files)
    return step, [a for a in files if checkpoint_step(a.name) == step]


def delete_all(session: Session, artifacts: Sequence[Artifact]) -> list[int]:
    """Delete these artifact rows; returns the blob ids they pointed to."""
    if artifacts:
        session.execute(delete(Artifact).where(Artifact.id.in_([a.id for a in artifacts])))
    return sorted({a.blob_id for a in artifacts})


def delete_unreferenced_blobs(session: Session, blob_ids: Sequence[int]) -> int:
    """Delete those of these blobs no artifact or dataset uses (content addressing lets files share a blob)."""
    if not blob_ids:
        return 0
    used_by_a_dataset = or_(Dataset.blob_id == Blob.id, Dataset.canonical_blob_id == Blob.id,
                            Dataset.canonical_index_blob_id == Blob.id)
    unused = (Blob.id.in_(blob_ids), ~exists().where(Artifact.blob_id == Blob.id), ~exists().where(used_by_a_dataset))
    return session.execute(delete(Blob).where(*unused)).rowcount  # chunks go with them (ON DELETE CASCADE)
