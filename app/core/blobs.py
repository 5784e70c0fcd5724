"""The chunked, content-addressed blob store: bytes stream in and out, never whole in memory.

Large blobs may keep their bytes in an S3-compatible object store instead of in chunks (app.core.object_store): the
process's store travels in each session's info (blob_objects.STORE_KEY; Resources.session_factory puts it there, as
it does the job sender), and every function here reads and writes either kind the same way. Garbage collection
deletes a blob's object once the deletion of its row has committed (app.core.blob_objects).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import blob_objects
from app.core.blob_objects import object_store_of
from app.core.models import Blob, BlobChunk
from app.core.models.blob import IN_DATABASE, IN_OBJECT_STORE, PENDING_PREFIX
from app.core.object_store import ObjectStore
from app.core.repositories.usage import blob_unused

CHUNK_SIZE = 1024 * 1024


def iter_file(fileobj: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield a file's bytes in chunks."""
    while chunk := fileobj.read(chunk_size):
        yield chunk


def placeholder(media_type: str, object_key: str | None = None) -> Blob:
    """A blob row for bytes still being written (their hash is known only at the end), in chunks or at object_key."""
    return Blob(sha256=f"{PENDING_PREFIX}{uuid.uuid4().hex}"[:64], size=0, media_type=media_type,
                location=IN_DATABASE if object_key is None else IN_OBJECT_STORE, object_key=object_key)


def put_stream(session: Session, chunks: Iterable[bytes], media_type: str) -> Blob:
    """Store bytes as a blob; an identical blob already stored is reused (its bytes are not kept twice)."""
    store = object_store_of(session)
    if store is not None and store.min_bytes is not None:
        # The size is known only at the end: up to min_bytes wait in memory, and only a stream that passes it goes
        # to the object store.
        chunks = iter(chunks)
        head, large = _head(chunks, store.min_bytes)
        if large:
            return _put_object_stream(session, store, itertools.chain(head, chunks), media_type)
        chunks = head
    return _put_chunks(session, chunks, media_type)


def _put_chunks(session: Session, chunks: Iterable[bytes], media_type: str) -> Blob:
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


def _head(chunks: Iterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Pieces taken from chunks until they hold limit bytes (True) or chunks ends first (False)."""
    head, size = [], 0
    for piece in chunks:
        head.append(piece)
        size += len(piece)
        if size >= limit:
            return head, True
    return head, False


class _Hashed:
    """Chunks hashed and counted as they pass on (to an upload that reads them once)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.digest, self.size = chunks, hashlib.sha256(), 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.chunks:
            self.digest.update(piece)
            self.size += len(piece)
            yield piece


def _put_object_stream(session: Session, store: ObjectStore, chunks: Iterable[bytes], media_type: str) -> Blob:
    key, hashed = store.new_key(), _Hashed(chunks)
    store.upload_stream(key, hashed)
    return _record_object(session, key, hashed.digest.hexdigest(), hashed.size, media_type)


def _record_object(session: Session, key: str, sha256: str, size: int, media_type: str) -> Blob:
    # The blob for bytes uploaded at key: a new row, or an identical blob already stored (key's object then goes).
    blob = placeholder(media_type, key)
    session.add(blob)
    session.flush()
    return finalise(session, blob, sha256, size)


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
        if blob.object_key is not None:
            blob_objects.delete_after_commit(session, [blob.object_key])
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
    return put_files(session, [path], media_type)[0]


def put_files(session: Session, paths: Sequence[Path], media_type: str) -> list[Blob]:
    """Store files from disk, a blob each, in order. Those bound for the object store go up first, before any row is
    written: a unit of work storing a checkpoint's large files then holds SQLite's write lock only for its rows."""
    store = object_store_of(session)
    uploads = [_upload(session, store, path) if store is not None and store.takes(path.stat().st_size) else None
               for path in paths]
    return [_put_small_file(session, path, media_type) if upload is None
            else _record_upload(session, store, upload, media_type)
            for path, upload in zip(paths, uploads, strict=True)]


def _put_small_file(session: Session, path: Path, media_type: str) -> Blob:
    with path.open("rb") as fileobj:
        return put_stream(session, iter_file(fileobj), media_type)


@dataclass(frozen=True)
class _Upload:
    """A file's bytes in the object store at key, their row not written yet (key None: a blob with the same bytes
    was stored already, so nothing went up)."""

    path: Path
    sha256: str
    size: int
    key: str | None


def _upload(session: Session, store: ObjectStore, path: Path) -> _Upload:
    sha256, size = _hash_file(path)
    with session.no_autoflush:  # a look-up only: the caller's pending rows are not written (nor locked for) yet
        if session.scalar(select(Blob.id).where(Blob.sha256 == sha256)) is not None:
            return _Upload(path, sha256, size, None)
    key = store.new_key()
    store.upload_file(path, key)
    return _Upload(path, sha256, size, key)


def _record_upload(session: Session, store: ObjectStore, upload: _Upload, media_type: str) -> Blob:
    key = upload.key
    if key is None:
        existing = _find_for_reuse(session, upload.sha256)
        if existing is not None:
            return existing
        key = store.new_key()  # collected since the look-up: the bytes go up after all
        store.upload_file(upload.path, key)
    return _record_object(session, key, upload.sha256, upload.size, media_type)


def _hash_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fileobj:
        for data in iter_file(fileobj):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


def upload_file(store: ObjectStore, path: Path, key: str) -> tuple[str, int]:
    """Put a file in the object store at key; returns its sha256 and size. The file is read twice, hashed then sent
    in parallel parts: reading a local file is far faster than the upload it lets go in parallel (or skip)."""
    sha256, size = _hash_file(path)
    store.upload_file(path, key)
    return sha256, size


def iter_blob(session: Session, blob_id: int) -> Iterator[bytes]:
    """Yield a blob's bytes in order, a chunk per query (or one streamed GET of its object): memory stays at one."""
    key = _object_key(session, blob_id)
    if key is not None:
        yield from blob_objects.store_to_read(session, blob_id, key).iter_object(key, CHUNK_SIZE)
        return
    seqs = session.scalars(select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).order_by(BlobChunk.seq)).all()
    for seq in seqs:
        yield session.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))


def read_range(session: Session, blob_id: int, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of a blob, cut short at its end; only the chunks and bytes in range are read."""
    if start < 0 or length < 0:
        raise ValueError(f"bad range: start {start}, length {length}")
    row = session.execute(select(Blob.object_key, Blob.size).where(Blob.id == blob_id)).one_or_none()
    if row is not None and row.object_key is not None:  # one ranged GET
        stop = min(start + length, row.size)
        store = blob_objects.store_to_read(session, blob_id, row.object_key)
        return store.read_range(row.object_key, start, stop) if start < stop else b""
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
    key = _object_key(session, blob_id)
    if key is not None:  # parallel ranged GETs straight to the file
        blob_objects.store_to_read(session, blob_id, key).download_file(key, path)
        return path
    with path.open("wb") as out:
        for data in iter_blob(session, blob_id):
            out.write(data)
    return path


def collect_garbage(session: Session, blob_ids: Sequence[int] | None = None) -> int:
    """Delete the blobs among blob_ids (every blob when None) that no dataset or artifact uses; returns how many.

    Safe beside uploads: one that reuses a blob locks it first (_find_for_reuse, FOR SHARE), so this delete waits
    for it and then fails on the foreign key instead of removing a blob just put to use. That failure is confined
    to a savepoint: the caller's own work stands, the blobs stay, and the next collection (any later delete, or a
    sweep: collect_garbage(session) with no ids) takes them. Uncommitted uploads are invisible to it. The objects
    of blobs in the object store are deleted once this unit of work commits (blob_objects.delete_after_commit).
    """
    if blob_ids is not None and not blob_ids:
        return 0
    where = [blob_unused()] + ([Blob.id.in_(list(blob_ids))] if blob_ids is not None else [])
    try:
        with session.begin_nested():
            statement = (delete(Blob).where(*where).returning(Blob.object_key)
                         .execution_options(synchronize_session=False))
            keys = session.scalars(statement).all()  # chunks go with them (ON DELETE CASCADE)
    except IntegrityError:
        return 0
    blob_objects.delete_after_commit(session, [key for key in keys if key is not None])
    return len(keys)


def _object_key(session: Session, blob_id: int) -> str | None:
    return session.scalar(select(Blob.object_key).where(Blob.id == blob_id))
