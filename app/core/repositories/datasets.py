"""Queries on datasets beyond the catalog's listing: those still waiting for their canonical blob."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import Dataset

WITHOUT_CANONICAL = Dataset.canonical_blob_id.is_(None) | Dataset.canonical_index_blob_id.is_(None)


def ids_without_canonical(session: Session) -> Sequence[int]:
    """Ids of datasets stored before canonical blobs existed, oldest first."""
    return session.scalars(select(Dataset.id).where(WITHOUT_CANONICAL).order_by(Dataset.id)).all()


def lock_without_canonical(session: Session, dataset_id: int) -> Dataset | None:
    """The dataset, locked, if it still lacks its canonical blob and no other transaction is filling it in."""
    # SKIP LOCKED (PostgreSQL; SQLite writers are serial anyway): two studios starting at once split the work.
    query = select(Dataset).where(Dataset.id == dataset_id, WITHOUT_CANONICAL).with_for_update(skip_locked=True)
    return session.scalar(query)
