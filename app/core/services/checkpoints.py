"""A run's checkpoints in the blob store: each stored whole or not at all, only the newest kept, exported to resume;
every checkpoint's adapter files are kept as that step's adapter (artifacts_repo.STEP_ADAPTER)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.core import blobs
from app.core.models import Artifact
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import runs as runs_repo
from app.core.services.runs import add_to_timeline
from worker.planning import manifest
from worker.planning.manifest import MANIFEST


class NotThisAttempt(Exception):
    """The run was handed to another attempt (its worker looked dead); this one must stop writing."""


class IncompleteCheckpoint(ValueError):
    """A checkpoint folder that does not match its manifest (it was being pruned when it was taken)."""


def store(session: Session, run_id: int, attempt: int, step: int, folder: Path) -> list[int]:
    """Store a trainer's checkpoint folder as the run's newest checkpoint and drop the older ones.

    All in the caller's unit of work, so a failure (a full disk, a database error) leaves the previous
    checkpoint as it was. Returns the blob ids the dropped ones used, to collect once this has committed.
    """
    older = artifacts_repo.of_kind(session, run_id, artifacts_repo.CHECKPOINT)
    # The same step stored by an earlier attempt (one that started over) is replaced, never kept twice.
    older = [*older, *artifacts_repo.step_adapters_after(session, run_id, step - 1)]
    size, listing = 0, _listing(folder)
    # Large files bound for an object store go up before any row is written (blobs.put_files).
    stored = blobs.put_files(session, [folder / relative for relative in listing], "application/octet-stream")
    for (relative, sha256), blob in zip(listing.items(), stored, strict=True):
        if sha256 is not None and blob.sha256 != sha256:
            raise IncompleteCheckpoint(f"{relative} of the checkpoint of step {step} does not match its manifest")
        name = artifacts_repo.checkpoint_name(step, relative)
        session.add(Artifact(run_id=run_id, kind=artifacts_repo.CHECKPOINT, blob_id=blob.id, size=blob.size,
                             name=name))
        if relative in artifacts_repo.PEFT_FILES:  # kept once the checkpoint goes: the step stays servable
            session.add(Artifact(run_id=run_id, kind=artifacts_repo.STEP_ADAPTER, blob_id=blob.id, size=blob.size,
                                 name=name))
        size += blob.size
    # Checked last, as a heartbeat: this locks the run row (PostgreSQL) only for the commit, not while a large
    # checkpoint streams in, so the heartbeat thread is never held up; a requeue meanwhile undoes it all.
    if runs_repo.beat(session, run_id, attempt) is None:
        raise NotThisAttempt(f"run {run_id} is no longer attempt {attempt}'s")
    dropped = artifacts_repo.delete_all(session, older)
    add_to_timeline(session, run_id, "checkpoint", f"Checkpoint of step {step} stored ({size / 2**20:.1f} MiB).",
                    step=step)
    return dropped


def _listing(folder: Path) -> dict[str, str | None]:
    """{relative path: sha256} of the folder's files per its manifest (None for the manifest itself).

    The hashes are compared as the blob store computes them while storing, so the files are read once.
    """
    try:
        files = manifest.check(folder, hashes=False)["files"]
    except manifest.ManifestMismatch as exc:
        raise IncompleteCheckpoint(f"{folder}: {exc}") from None
    return {**{name: entry["sha256"] for name, entry in sorted(files.items())}, MANIFEST: None}


def export(session: Session, run_id: int, dest: Path) -> Path | None:
    """Write the run's newest checkpoint under dest; returns its folder (None when it has none)."""
    latest = artifacts_repo.latest_checkpoint(session, run_id)
    if latest is None:
        return None
    step, files = latest
    for artifact in files:
        blobs.export_to_file(session, artifact.blob_id, dest / artifact.name)
    return dest / artifacts_repo.checkpoint_name(step, "").rstrip("/")


def drop(session: Session, run_id: int) -> list[int]:
    """Delete all of a run's checkpoints (it has ended well); returns the blob ids to collect after commit."""
    return artifacts_repo.delete_all(session, artifacts_repo.of_kind(session, run_id, artifacts_repo.CHECKPOINT))


def collect(session: Session, blob_ids: list[int]) -> int:
    """Delete the blobs among these that nothing uses any more; returns how many.

    A unit of work of its own after the one that dropped the artifacts: deleting a blob another run is just
    starting to use fails that delete (the reuse locks the blob), and must not undo what was stored.
    """
    return blobs.collect_garbage(session, blob_ids)
