"""Queries on the files runs store (adapters, checkpoints)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.core.models import Artifact

CHECKPOINT = "checkpoint"
# The adapter files of each stored checkpoint, kept after the checkpoint itself is dropped (a newer one came, or the
# run ended): a few MiB per step that let any step be served, evaluated and compared as `run-<id>@step-<k>`. They
# share the checkpoint's blobs, so keeping them costs nothing while the checkpoint is still there.
STEP_ADAPTER = "step_adapter"
# What PEFT loads from an adapter folder; the tokenizer, card and spec (or a checkpoint's optimizer) stay behind.
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def checkpoint_name(step: int, relative: str) -> str:
    """A checkpoint file's artifact name: the trainer's folder name, then the file (step-000040/rng.json)."""
    return f"step-{step:06d}/{relative}"


def checkpoint_step(name: str) -> int:
    """The step in a checkpoint artifact's name."""
    return int(name.split("/", 1)[0].removeprefix("step-"))


def stored_steps(session: Session, run_id: int) -> list[int]:
    """The steps whose adapter a run keeps (STEP_ADAPTER), ascending."""
    names = session.scalars(select(Artifact.name).where(Artifact.run_id == run_id, Artifact.kind == STEP_ADAPTER,
                                                        Artifact.name.endswith(PEFT_FILES[1])))
    return sorted(checkpoint_step(name) for name in names)


def step_adapters_after(session: Session, run_id: int, step: int) -> Sequence[Artifact]:
    """A run's kept step adapters later than step (an attempt that starts over from step makes them again)."""
    return [a for a in of_kind(session, run_id, STEP_ADAPTER) if checkpoint_step(a.name) > step]


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
