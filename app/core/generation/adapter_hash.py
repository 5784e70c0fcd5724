"""The identity of a run's adapter files: AdapterRef.sha256, computed one way for the web and the service.

sha256 over one line per file, "name\\0blob_sha256\\n", sorted by name. The files are the run's artifacts of kind
`adapter` (the final adapter), a registry version's own files (adapter_version_files), or, when a step is given,
the adapter files kept of that step's checkpoint (`step_adapter`), named relative to the checkpoint folder
(adapter_model.safetensors, not step-000040/adapter_model.safetensors), so the hash says which bytes are applied,
not where they were stored. A version registered from a run's final adapter has that adapter's hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import AdapterVersionFile, Artifact, Blob
from app.core.repositories import artifacts as artifacts_repo

ADAPTER = "adapter"


@dataclass(frozen=True)
class AdapterFile:
    name: str  # the path inside the adapter folder
    blob_id: int
    blob_sha256: str
    size: int


def adapter_hash(files: Iterable[tuple[str, str]]) -> str:
    """The hash of (name, blob sha256) pairs: sha256 of "name\\0blob_sha256\\n" lines sorted by name."""
    digest = hashlib.sha256()
    for name, blob_sha256 in sorted(files):
        digest.update(f"{name}\0{blob_sha256}\n".encode())
    return digest.hexdigest()


def adapter_files(session: Session, run_id: int, step: int | None = None,
                  version_id: int | None = None) -> list[AdapterFile]:
    """The files of a run's final adapter (step None), of its kept adapter of that step, or of a registry version
    (version_id), by name; empty when there are none (no adapter yet, that step not kept, the version gone)."""
    if version_id is not None:
        rows = session.execute(select(AdapterVersionFile.name, AdapterVersionFile.blob_id, Blob.sha256,
                                      AdapterVersionFile.size).join(Blob, Blob.id == AdapterVersionFile.blob_id)
                               .where(AdapterVersionFile.version_id == version_id))
        return sorted((AdapterFile(*row) for row in rows), key=lambda f: f.name)
    if step is None:
        where = (Artifact.kind == ADAPTER,)
        prefix = ""
    else:
        prefix = artifacts_repo.checkpoint_name(step, "")
        where = (Artifact.kind == artifacts_repo.STEP_ADAPTER, Artifact.name.startswith(prefix, autoescape=True))
    query = (select(Artifact.name, Artifact.blob_id, Blob.sha256, Artifact.size)
             .join(Blob, Blob.id == Artifact.blob_id).where(Artifact.run_id == run_id, *where))
    files = [AdapterFile(name.removeprefix(prefix), blob_id, sha, size) for name, blob_id, sha, size in
             session.execute(query)]
    return sorted(files, key=lambda f: f.name)


def adapter_sha256(session: Session, run_id: int, step: int | None = None) -> str | None:
    """AdapterRef.sha256 for a run's adapter (or one checkpoint's), None when it has no such files."""
    files = adapter_files(session, run_id, step)
    return adapter_hash((f.name, f.blob_sha256) for f in files) if files else None
