"""Uploading a dataset: validate while reading, then store bytes and record in one unit of work."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core import blob_staging, blobs
from app.core.access import can_see, owner_id
from app.core.datasets import DEFAULT_LIMITS, CanonicalWriter, DatasetProblem, InspectedDataset, Limits, inspect_dataset
from app.core.datasets.canonical_file import index_entries, parse_rows, rows_span
from app.core.errors import StudioError, not_found
from app.core.models import Blob, Dataset, User
from app.core.repositories import datasets as datasets_repo
from app.core.services import quotas

MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
CANONICAL_MEDIA_TYPE = "application/x-ndjson"
INDEX_MEDIA_TYPE = "application/octet-stream"


def create_dataset(session: Session, path: Path, filename: str, name: str = "", *, user: User | None = None,
                   limits: Limits = DEFAULT_LIMITS, scratch: Path | None = None) -> Dataset:
    """Validate the spooled upload at path; store it, owned by user, only if every row is valid.

    All or nothing: every row is checked (and the canonical rows written to scratch) before anything is stored;
    the files are then staged into the blob store in short units of work of their own (app.core.blob_staging:
    a large upload must not hold SQLite's one write lock throughout), and the dataset row adopts them under one
    savepoint of the caller's unit of work, so a bad row, a full disk or a database error leaves nothing."""
    with session.no_autoflush:  # a read only: the caller's pending writes must not take SQLite's lock before staging
        quotas.check_storage(session, user, path.stat().st_size)  # the user's storage quota, before any reading
    staged: list[blob_staging.Staged] = []
    try:
        with tempfile.TemporaryDirectory(prefix="lorastudio-canonical-", dir=scratch) as folder:
            info, rows_path, index_path = _validated(path, filename, Path(folder), limits)
            for file, media_type in ((path, MEDIA_TYPES[info.file_type]), (rows_path, CANONICAL_MEDIA_TYPE),
                                     (index_path, INDEX_MEDIA_TYPE)):
                staged.append(blob_staging.stage_file(session, file, media_type))
        with session.begin_nested():
            blob_staging.lock_for_adoption(session, staged)
            return _create(session, info, staged, filename, name, user)
    except BaseException as error:
        blob_staging.discard(session, staged)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise storage_full() from None
        if isinstance(error, DBAPIError) and _disk_full(error):
            raise storage_full() from None
        raise


def storage_full() -> StudioError:
    """The error for an upload that met a full disk (spool, scratch or database): nothing of it was kept."""
    return StudioError("insufficient_storage", "storage_full", "The studio's disk is full, so the upload was not "
                       "stored (nothing of it was kept); ask the administrator to free space, then upload again.",
                       field="file")


def _disk_full(error: DBAPIError) -> bool:
    """SQLite's "database or disk is full", PostgreSQL's disk_full (SQLSTATE 53100)."""
    return getattr(error.orig, "sqlstate", None) == "53100" or "disk is full" in str(error.orig)


def _create(session: Session, info: InspectedDataset, staged: list[blob_staging.Staged], filename: str, name: str,
            user: User | None) -> Dataset:
    blob, canonical, index = (blob_staging.adopt(session, item) for item in staged)
    dataset = Dataset(
        name=(name.strip() or Path(filename).name or "dataset")[:200],
        filename=Path(filename).name[:255],
        file_type=info.file_type,
        format=info.format,
        row_count=info.row_count,
        size_bytes=blob.size,
        sha256=blob.sha256,
        columns=list(info.columns),
        preview=list(info.preview),
        blob_id=blob.id,
        canonical_blob_id=canonical.id,
        canonical_index_blob_id=index.id,
        owner_id=owner_id(user),
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: int, *, user: User | None = None) -> Dataset:
    """A dataset user may see; someone else's is as not found as one that never existed."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or not can_see(user, dataset.owner_id):
        raise not_found("dataset", dataset_id)
    return dataset


def canonical_rows(session: Session, dataset: Dataset, first: int, count: int) -> list[dict[str, Any]]:
    """Rows [first, first + count) in canonical form, read as two small ranges: their index entries, then them."""
    stop = min(first + count, dataset.row_count)
    if first < 0 or first >= stop:
        return []
    rows_id, index_id = canonical_blob_ids(session, dataset)
    entries = blobs.read_range(session, index_id, *index_entries(first, stop))
    return parse_rows(blobs.read_range(session, rows_id, *rows_span(entries)), first, stop)


def canonical_blob_ids(session: Session, dataset: Dataset) -> tuple[int, int]:
    """The ids of the dataset's canonical rows and row index, stored first if the dataset predates them."""
    # Datasets are backfilled at start-up (backfill_canonical); this catches one written since by a process still
    # running older code, so that readers can rely on the canonical blob.
    if dataset.canonical_blob_id is None or dataset.canonical_index_blob_id is None:
        with tempfile.TemporaryDirectory(prefix="lorastudio-canonical-") as scratch:
            raw = blobs.export_to_file(session, dataset.blob_id, Path(scratch) / f"raw.{dataset.file_type}")
            _, canonical, index = _canonicalise(session, raw, raw.name, Path(scratch))
        dataset.canonical_blob_id, dataset.canonical_index_blob_id = canonical.id, index.id
        session.flush()
        return canonical.id, index.id
    return dataset.canonical_blob_id, dataset.canonical_index_blob_id


def datasets_to_backfill(session: Session) -> list[int]:
    """Ids of the datasets stored before canonical blobs existed."""
    return list(datasets_repo.ids_without_canonical(session))


def backfill_canonical(session: Session, dataset_id: int) -> bool:
    """Give one older dataset its canonical blob and index; False if it has them or another process is at it."""
    dataset = datasets_repo.lock_without_canonical(session, dataset_id)
    if dataset is None:
        return False
    canonical_blob_ids(session, dataset)
    return True


def _canonicalise(session: Session, path: Path, filename: str, scratch: Path,
                  limits: Limits = DEFAULT_LIMITS) -> tuple[InspectedDataset, Blob, Blob]:
    """Validate the file and write its canonical rows and index to scratch; then store both in session's unit."""
    info, rows_path, index_path = _validated(path, filename, scratch, limits)
    canonical = blobs.put_file(session, rows_path, CANONICAL_MEDIA_TYPE)
    return info, canonical, blobs.put_file(session, index_path, INDEX_MEDIA_TYPE)


def _validated(path: Path, filename: str, scratch: Path, limits: Limits) -> tuple[InspectedDataset, Path, Path]:
    """Check every row and, in the same pass, write the canonical rows and their index to scratch (no database)."""
    try:
        with CanonicalWriter(scratch) as out:
            info = inspect_dataset(path, filename, limits, canonical_out=out)
    except DatasetProblem as problem:
        raise StudioError("invalid", problem.code, problem.message, field=problem.field, line=problem.line) from None
    return info, out.rows_path, out.index_path
