"""Exports of a registered adapter version (merged 16-bit model, GGUF, GGUF LoRA): a worker job each, whose files
are stored on the blob store only once the export child has verified them by generation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow

LIVE = "status IN ('queued', 'running', 'succeeded')"  # an export in one of these is reused, not made again


class AdapterExport(Base):
    """One export of a version to one format: queued by the web, computed by a worker's child process."""

    __tablename__ = "adapter_exports"
    # One live export per version and format, also when two requests race past the service's lookup.
    __table_args__ = (Index("uq_adapter_exports_live", "version_id", "format", unique=True,
                            sqlite_where=text(LIVE), postgresql_where=text(LIVE)),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"), index=True)
    format: Mapped[str] = mapped_column(String(16))  # merged | gguf | gguf_lora (worker.export.inputs.FORMATS)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed|cancelled
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # a running one stops at its next beat
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    stage: Mapped[str] = mapped_column(Text, default="")  # what the child is doing now (its last Log)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)  # stages finished
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)  # while running
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # verification figures, timings, sizes
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class AdapterExportFile(Base):
    """A file an export wrote, on the blob store (blob garbage collection counts it as a user of its blob)."""

    __tablename__ = "adapter_export_files"
    __table_args__ = (UniqueConstraint("export_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("adapter_exports.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
