"""An uploaded, validated dataset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class Dataset(Base):
    """Original bytes live in a blob; the record keeps what was learnt while validating them."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    file_type: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(30))
    row_count: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    preview: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"))
    # The rows in canonical form as JSON Lines, and the offsets of every INDEX_STRIDE-th row in it (little-endian
    # uint64s, then the total size), so a page of rows is two range reads. NULL only until the start-up backfill
    # (app.core.schema.upgrade) reaches a dataset stored before they existed.
    canonical_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), default=None)
    canonical_index_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), default=None)
    # Who uploaded it; only they (and admins) see it. NULL: made before accounts existed, admins only.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                 default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
