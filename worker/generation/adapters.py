"""Adapter files for the service: a run's adapter (or one checkpoint's) exported once from the database into a
cache folder named by AdapterRef.sha256, whole or not at all, and checked against that hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.core import blobs
from app.core.db import session_scope
from app.core.generation.adapter_hash import adapter_files, adapter_hash
from app.core.generation.protocol import AdapterRef
from app.core.repositories.artifacts import PEFT_FILES

NEEDED = PEFT_FILES  # what PEFT loads; the tokenizer, card and spec stay behind


class Refused(Exception):
    """A request the service will not serve: status and code as the ReplyError gives them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(ref: AdapterRef, why: str) -> Refused:
    """The adapter_not_found refusal."""
    which = f"checkpoint of step {ref.step}" if ref.step is not None else "adapter"
    return Refused(404, "adapter_not_found", f"The {which} of run {ref.run_id} {why}.")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AdapterCache:
    """data_dir/generation-cache/<sha256>/ holding an adapter's config and weights."""

    def __init__(self, session_factory: sessionmaker[Session], root: Path) -> None:
        self.session_factory = session_factory
        self.root = Path(root)

    def folder(self, ref: AdapterRef) -> Path:
        """The adapter's cache folder, exported first if it is not there; Refused (404) when the database does not
        (or no longer does) hold files that hash to ref.sha256."""
        final = self.root / ref.sha256
        with session_scope(self.session_factory) as session:
            wanted = self._listed(session, ref)
            if not all((final / name).is_file() for name in NEEDED):
                self._export(session, wanted, final)
        return final

    def check(self, ref: AdapterRef) -> None:
        """Refused (404) unless the database still holds the run's files and they hash to ref.sha256 (an adapter
        already loaded is served only while its run still has it)."""
        with session_scope(self.session_factory) as session:
            self._listed(session, ref)

    @staticmethod
    def _listed(session: Session, ref: AdapterRef) -> dict:
        """The files PEFT needs, by name, of the run's adapter as the database lists it; Refused when it does not
        match ref."""
        files = adapter_files(session, ref.run_id, ref.step, ref.version_id)
        if not files:
            raise not_found(ref, "has no stored files (never finished, deleted, or that checkpoint is gone)")
        if adapter_hash((f.name, f.blob_sha256) for f in files) != ref.sha256:
            raise not_found(ref, f"does not match sha256 {ref.sha256} (its files have changed)")
        wanted = {f.name: f for f in files if f.name in NEEDED}
        if set(wanted) != set(NEEDED):
            raise not_found(ref, f"lacks {', '.join(sorted(set(NEEDED) - set(wanted)))}")
        return wanted

    def _export(self, session: Session, files: dict, final: Path) -> None:
        """Write the files into a temporary folder, check each against its blob's hash, and rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            for name, file in files.items():
                path = blobs.export_to_file(session, file.blob_id, tmp / name)
                if file_sha256(path) != file.blob_sha256:
                    raise Refused(500, "adapter_corrupt", f"{name} of the adapter does not hash to its stored sha256.")
            if final.is_dir() and not all((final / name).is_file() for name in NEEDED):
                shutil.rmtree(final, ignore_errors=True)  # not ours to trust: a copy made by hand, say
            try:
                os.rename(tmp, final)
            except OSError:  # another service exported it meanwhile: theirs is as good
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
