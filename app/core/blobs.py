"""The chunked, content-addressed blob store: bytes stream in and out, never whole in memory."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.models import Blob, BlobChunk
from app.core.models.blob import PENDING_PREFIX
from app.core.repositories.usage import blob_unused

CHUNK_SIZE = 1024 * 1024


def iter_file(fileobj: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield a file's bytes in chunks."""
    while chunk := fileobj.read(chunk_size):
        yield chunk


def placeholder(media_type: str) -> Blob:
    """A blob row for bytes still being written (their hash is known only at the end)."""
    return Blob(sha256=f"{PENDING_PREFIX}{uuid.uuid4().hex}"[:64], size=0, media_type=media_type)


def put_stream(session: Session, chunks: Iterable[bytes], media_type: str) -> Blob:
    """Store bytes as a blob; an identical blob already stored is reused (its chunks are not duplicated)."""
    # The hash is known only at the end, so chunks go under a placeholder blob first.
    blob = placeholder(media_type)
    session.add(blob)
    session.flush()
    digest, size = hashlib.sha256(), 0
    for seq, data in enumerate(_rechunk(chunks)):
        digest.update(data)
        size += len(data)
        chunk = BlobChunk(blob_id=blob.id, seq=seq, data=data)
        session.add(chunk)
        session.flush()
        # A written chunk need not stay in the identity map: memory stays at one chunk.
        session.expunge(chunk)
    return finalise(session, blob, digest.hexdigest(), size)


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        while len(buffer) >= CHUNK_SIZE:
            yield bytes(buffer[:CHUNK_SIZE])
            del buffer[:CHUNK_SIZE]
    if buffer:
        yield bytes(buffer)


def finalise(session: Session, blob: Blob, sha256: str, size: int) -> Blob:
    """Name a placeholder by its bytes' hash, or drop it for an identical blob already stored (returned)."""
    existing = _find_for_reuse(session, sha256)
    if existing is None:
        try:
            with session.begin_nested():  # a savepoint: only the renaming is undone if it collides
                session.execute(update(Blob).where(Blob.id == blob.id).values(sha256=sha256, size=size))
        except IntegrityError:
            # Another transaction stored the same bytes after our look-up and has committed since (its unique
            # sha256 made us wait for that): use its blob, as if we had found it first.
            existing = _find_for_reuse(session, sha256)
            if existing is None:
                raise
    if existing is not None:
        session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob.id))
        session.delete(blob)
        session.flush()
        return existing
    session.refresh(blob)
    return blob


def _find_for_reuse(session: Session, sha256: str) -> Blob | None:
    # FOR SHARE (PostgreSQL; SQLite writers are serial anyway): a blob found for reuse cannot be deleted by a
    # concurrent clean-up of unused blobs before this unit of work, which now uses it, commits.
    return session.scalar(select(Blob).where(Blob.sha256 == sha256).with_for_update(read=True))


def put_file(session: Session, path: Path, media_type: str) -> Blob:
    """Store a file from disk."""
    with path.open("rb") as fileobj:
        return put_stream(session, iter_file(fileobj), media_type)


def iter_blob(session: Session, blob_id: int) -> Iterator[bytes]:
    """Yield a blob's chunks in order, one query per chunk so memory stays at one chunk."""
    seqs = session.scalars(select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).order_by(BlobChunk.seq)).all()
    for seq in seqs:
        yield session.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))


def read_range(session: Session, blob_id: int, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of a blob, cut short at its end; only the chunks and bytes in range are read."""
    if start < 0 or length < 0:
        raise ValueError(f"bad range: start {start}, length {length}")
    end, parts = start + length, []
    # put_stream rechunks to CHUNK_SIZE, so chunk k holds bytes [k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE).
    for seq in range(start // CHUNK_SIZE, -(-end // CHUNK_SIZE)):
        low, high = max(start - seq * CHUNK_SIZE, 0), min(end - seq * CHUNK_SIZE, CHUNK_SIZE)
        # substr counts from 1 and works on SQLite BLOBs and PostgreSQL bytea alike: the database slices.
        piece = func.substr(BlobChunk.data, low + 1, high - low, type_=BlobChunk.data.type)
        data = session.scalar(select(piece).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
        if not data:  # past the last chunk, or the end of a short last chunk
            break
        parts.append(data)
    return b"".join(parts)


def export_to_file(session: Session, blob_id: int, path: Path) -> Path:
    """Write a blob to disk (the worker hands files to the trainer this way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for data in iter_blob(session, blob_id):
            out.write(data)
    return path


def collect_garbage(session: Session, blob_ids: Sequence[int] | None = None) -> int:
    """Delete the blobs among blob_ids (every blob when None) that no dataset or artifact uses; returns how many.

    Safe beside uploads: one that reuses a blob locks it first (_find_for_reuse, FOR SHARE), so this delete waits
    for it and then fails on the foreign key instead of removing a blob just put to use. That failure is confined
    to a savepoint: the caller's own work stands, the blobs stay, and the next collection (any later delete, or a
    sweep: collect_garbage(session) with no ids) takes them. Uncommitted uploads are invisible to it.
    """
    if blob_ids is not None and not blob_ids:
        return 0
    where = [blob_unused()] + ([Blob.id.in_(list(blob_ids))] if blob_ids is not None else [])
    try:
        with session.begin_nested():
            statement = delete(Blob).where(*where).execution_options(synchronize_session=False)
            return session.execute(statement).rowcount  # chunks go with them (ON DELETE CASCADE)
    except IntegrityError:
        return 0
