"""Queries on datasets and registered base models."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core.access import visible
from app.core.models import BaseModelEntry, Dataset, User


def list_datasets(session: Session, user: User | None = None) -> Sequence[Dataset]:
    """Newest datasets first: those user may see (every one for admins and internal callers)."""
    return session.scalars(visible(select(Dataset), Dataset, user).order_by(Dataset.id.desc())).all()


def list_models(session: Session) -> Sequence[BaseModelEntry]:
    """Registered base models by name."""
    return session.scalars(select(BaseModelEntry).order_by(BaseModelEntry.name)).all()


def find_model(session: Session, name_or_ref: str) -> BaseModelEntry | None:
    """A registered model by its name or its reference (hub id / folder)."""
    query = select(BaseModelEntry).where(or_(BaseModelEntry.name == name_or_ref, BaseModelEntry.ref == name_or_ref))
    return session.scalars(query.limit(1)).first()
