"""Staging a large file into the blob store in short units of work, so one upload never holds SQLite's only
write lock for the whole copy.

SQLite has one writer at a time. Stored in the caller's single unit of work, a 1 GB upload held that lock for
the whole copy, past the 30 s busy timeout of every other writer (other uploads, sign-ins, a running job's
heartbeat, which the janitor then takes for a lost worker). Staged, the chunks go in under a placeholder blob,
committed every COMMIT_CHUNKS chunks on a connection of their own; the caller's unit of work then adopts the
placeholder (renames it to its hash, or drops it for an identical blob already stored) together with the rows
that point to it. Until adopted, a placeholder is invisible: nothing points to it and garbage collection skips
it (PENDING_PREFIX); one a killed process left behind is removed by sweep_abandoned.

A file bound for the object store (app.core.object_store) writes no chunks: its placeholder names the object its
bytes go to, committed before the upload so that whatever a failure leaves can be found and removed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.core import blob_objects, blobs
from app.core.db import utcnow
from app.core.models import Blob, BlobChunk
from app.core.models.blob import PENDING_PREFIX

log = logging.getLogger(__name__)
COMMIT_CHUNKS = 8  # 8 MiB per unit of work: other writers wait at most for one such commit
ABANDONED_AFTER = timedelta(hours=6)  # far above any upload's staging time


@dataclass(frozen=True)
class Staged:
    """A file written to the blob store, not yet adopted (unless `final`: stored in the caller's unit already)."""

    blob_id: int
    sha256: str
    size: int
    final: bool = False


def stage_file(session: Session, path: Path, media_type: str) -> Staged:
    """Write path's bytes under a placeholder blob in units of work of their own (see the module's doc).

    When the caller's connection already holds a transaction (a write began it, or a test's outer transaction),
    a second connection would wait for it: the file then goes into the caller's unit, as blobs.put_file does."""
    if _holds_transaction(session):
        blob = blobs.put_file(session, path, media_type)
        return Staged(blob.id, blob.sha256, blob.size, final=True)
    store = blob_objects.object_store_of(session)
    key = store.new_key() if store is not None and store.takes(path.stat().st_size) else None
    with Session(bind=session.get_bind(), info=blob_objects.store_info(session)) as staging:
        placeholder = blobs.placeholder(media_type, key)
        staging.add(placeholder)
        staging.flush()
        blob_id = placeholder.id
        staging.commit()
        try:
            # Always sent, even when identical bytes are stored: that blob may be collected before adoption.
            digest, size = blobs.upload_file(store, path, key) if key else _write_chunks(staging, blob_id, path)
        except BaseException:
            staging.rollback()
            _discard(staging, blob_id)
            raise
    return Staged(blob_id, digest, size)


def lock_for_adoption(session: Session, staged: list[Staged]) -> None:
    """Begin the adopting transaction with a write (a no-op UPDATE of the placeholders), so SQLite takes its write
    lock before this transaction reads anything: a transaction that reads first and writes after another writer
    committed fails at once with "database is locked" (WAL's busy snapshot), which no busy timeout waits out."""
    ids = [item.blob_id for item in staged]
    session.execute(update(Blob).where(Blob.id.in_(ids)).values(size=Blob.size)
                    .execution_options(synchronize_session=False))


def adopt(session: Session, staged: Staged) -> Blob:
    """The stored blob for staged, in the caller's unit of work: renamed to its hash, or an identical one."""
    blob = session.get(Blob, staged.blob_id)
    return blob if staged.final else blobs.finalise(session, blob, staged.sha256, staged.size)


def discard(session: Session, staged: list[Staged]) -> None:
    """Remove placeholders whose adoption failed (the caller's unit rolled back), each in a unit of its own."""
    with Session(bind=session.get_bind(), info=blob_objects.store_info(session)) as cleanup:
        for item in staged:
            if not item.final:
                _discard(cleanup, item.blob_id)


def sweep_abandoned(session: Session, older_than: timedelta = ABANDONED_AFTER) -> int:
    """Delete placeholders older than older_than (a process killed while staging) and the object store's objects as
    old that no blob names; returns how many of both went."""
    # Objects first: an abandoned placeholder still names its object here, which then goes after this commits.
    objects = blob_objects.sweep(session, older_than)
    keys = session.scalars(delete(Blob).where(Blob.sha256.startswith(PENDING_PREFIX),
                                              Blob.created_at < utcnow() - older_than)
                           .returning(Blob.object_key).execution_options(synchronize_session=False)).all()
    blob_objects.delete_after_commit(session, [key for key in keys if key is not None])
    if keys:
        log.info("removed %s blob placeholders abandoned by a killed upload", len(keys))
    return len(keys) + objects


def _write_chunks(staging: Session, blob_id: int, path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fileobj:
        for seq, data in enumerate(blobs.iter_file(fileobj)):
            digest.update(data)
            size += len(data)
            staging.execute(BlobChunk.__table__.insert().values(blob_id=blob_id, seq=seq, data=data))
            if seq % COMMIT_CHUNKS == COMMIT_CHUNKS - 1:
                staging.commit()
    staging.commit()
    return digest.hexdigest(), size


def _discard(session: Session, blob_id: int) -> None:
    try:
        # Its chunks go with it (ON DELETE CASCADE); its object, if it has one, once this commits.
        key = session.scalar(delete(Blob).where(Blob.id == blob_id).returning(Blob.object_key))
        blob_objects.delete_after_commit(session, [key] if key else [])
        session.commit()
    except Exception:  # the database may be what failed: sweep_abandoned takes it later
        session.rollback()
        log.warning("could not remove blob placeholder %s; the sweep will", blob_id, exc_info=True)


def _holds_transaction(session: Session) -> bool:
    bind = session.get_bind()
    if isinstance(bind, Connection):  # a session on one given connection (a test's): stay on it
        return True
    if bind.dialect.name != "sqlite":
        return False  # PostgreSQL locks rows, not the database: a second connection never waits for this one
    return bool(session.connection().connection.dbapi_connection.in_transaction)
