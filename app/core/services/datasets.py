"""Uploading a dataset: validate while reading, then store bytes and record in one unit of work."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from app.core import blobs
from app.core.access import can_see, owner_id
from app.core.datasets import DatasetProblem, inspect_dataset
from app.core.errors import StudioError, not_found
from app.core.models import Dataset, User

MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def create_dataset(session: Session, path: Path, filename: str, name: str = "", *, user: User | None = None) -> Dataset:
    """Validate the spooled upload at path; store it, owned by user, only if every row is valid."""
    try:
        info = inspect_dataset(path, filename)
    except DatasetProblem as problem:
        raise StudioError("invalid", problem.code, problem.message, field=problem.field, line=problem.line) from None
    blob = blobs.put_file(session, path, MEDIA_TYPES[info.file_type])
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
