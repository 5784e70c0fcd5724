"""Content-addressed blobs: their bytes as ordered chunks in the database, or as one object in an object store."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow

PENDING_PREFIX = "pending-"  # a placeholder's sha256 until its bytes are all in (app.core.blob_staging)
IN_DATABASE, IN_OBJECT_STORE = "db", "s3"  # Blob.location


class Blob(Base):
    """One stored file, identified by the sha256 of its bytes."""

    __tablename__ = "blobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    # Where the bytes are: IN_DATABASE (BlobChunk rows) or IN_OBJECT_STORE (the object named object_key, in the
    # bucket of the process's settings). A key is never reused by another blob (app.core.object_store.new_key), so
    # deleting the object of a deleted blob can never take the bytes of a newer blob of the same content.
    location: Mapped[str] = mapped_column(String(8), default=IN_DATABASE, server_default=IN_DATABASE)
    object_key: Mapped[str | None] = mapped_column(String(512), default=None, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BlobChunk(Base):
    """A slice of a blob's bytes; seq orders them."""

    __tablename__ = "blob_chunks"

    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
