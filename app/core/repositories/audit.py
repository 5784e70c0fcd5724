"""Reading the audit log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import AuditEntry


def newest(session: Session, limit: int, action: str | None = None, before_id: int | None = None
           ) -> Sequence[AuditEntry]:
    """Up to limit entries, newest first, of one action (or all) and older than before_id (or any)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return session.scalars(query).all()
