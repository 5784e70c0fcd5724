"""An adapter's PEFT files written from the blob store into a folder for a child process, refused unless they still
hash to the sha256 that was requested (the evaluation and export job kinds share it)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.core import blobs
from app.core.errors import StudioError
from app.core.generation.adapter_hash import adapter_files, adapter_hash
from app.core.generation.protocol import AdapterRef
from app.core.repositories.artifacts import PEFT_FILES


def export_adapter(session: Session, ref: AdapterRef, folder: Path) -> None:
    """The adapter files PEFT loads (a run's, a kept step's or a registry version's), written to folder; refused
    when they no longer hash to ref.sha256 (the adapter requested is the adapter used, or none is)."""
    files = adapter_files(session, ref.run_id, ref.step, ref.version_id)
    which = f"run {ref.run_id}" + (f" at step {ref.step}" if ref.step is not None else "")
    if ref.version_id is not None:
        which = f"registered version {ref.version_id}"
    if not files or adapter_hash((f.name, f.blob_sha256) for f in files) != ref.sha256:
        raise StudioError("conflict", "adapter_changed", f"The adapter of {which} is gone or no longer "
                          f"matches sha256 {ref.sha256} (the one requested).")
    wanted = {f.name: f for f in files if f.name in PEFT_FILES}
    if set(wanted) != set(PEFT_FILES):
        raise StudioError("invalid", "adapter_incomplete", f"The adapter of {which} lacks "
                          f"{', '.join(sorted(set(PEFT_FILES) - set(wanted)))}.")
    for name, file in wanted.items():
        blobs.export_to_file(session, file.blob_id, folder / name)
