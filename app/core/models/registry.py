"""The adapter registry: named adapters, their immutable versions (each with its own references to the adapter's
blobs, so a version outlives the run it came from) and movable aliases (production, staging)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class RegisteredAdapter(Base):
    """A name a team gives an adapter; its versions are the adapters registered under it."""

    __tablename__ = "registered_adapters"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                 default=None)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdapterVersion(Base):
    """One registered adapter, immutable: its files (AdapterVersionFile), where it came from and its lineage."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("adapter_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("registered_adapters.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, … per adapter; never reused
    source: Mapped[str] = mapped_column(String(16))  # run | step
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True, default=None)
    step: Mapped[int | None] = mapped_column(Integer, default=None)  # the run's kept step, for source "step"
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id", ondelete="SET NULL"),
                                                      default=None)
    base_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))  # adapter_hash of its files: what generation records
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdapterVersionFile(Base):
    """A file of a version, on the blob store (the same blob the run's artifact used: content-addressed)."""

    __tablename__ = "adapter_version_files"
    __table_args__ = (UniqueConstraint("version_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class AdapterAlias(Base):
    """A movable name for one version of an adapter (production, staging); every move is audited."""

    __tablename__ = "adapter_aliases"
    __table_args__ = (UniqueConstraint("adapter_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("registered_adapters.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    # RESTRICT: a version an alias points to cannot go (the service refuses first, naming the alias).
    version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="RESTRICT"), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
