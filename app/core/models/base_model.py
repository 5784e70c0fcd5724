"""A base model the studio may fine-tune: a hub id or a local folder."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class BaseModelEntry(Base):
    """Registered so runs can name it; the web process never opens its weights."""

    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(10))  # "hub" | "local"
    ref: Mapped[str] = mapped_column(String(1000))  # hub id or absolute folder path
    gguf_file: Mapped[str | None] = mapped_column(String(255), default=None)
    # Runs may set model.trust_remote_code only for a model an admin registered with this on.
    trust_remote_code: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
