"""The audit log: one row per security-relevant action (sign-ins, tokens, account changes, local model folders)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class AuditEntry(Base):
    """Who did what to what, from where; written in the same transaction as the action it records."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # NULL for a failed sign-in to an unknown name, a CLI action on the host, or once the account is deleted;
    # actor keeps the name as it was, so the entry still reads after that.
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                      default=None)
    actor: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "login.success", "token.create"
    target: Mapped[str] = mapped_column(String(255), default="")
    client: Mapped[str] = mapped_column(String(64), default="")  # the client address, or "cli"
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
