"""Queries and conditional updates on dataset analyses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.models import DatasetAnalysis

LIVE = ("queued", "running", "succeeded")  # states whose result is, or will be, worth reusing


def get(session: Session, analysis_id: int) -> DatasetAnalysis | None:
    """An analysis by id."""
    return session.get(DatasetAnalysis, analysis_id)


def find_reusable(session: Session, dataset_id: int, base_model_id: int, max_seq_length: int,
                  system_prompt: str | None = None) -> DatasetAnalysis | None:
    """The newest queued, running or succeeded analysis of the same dataset, model, length and system prompt."""
    query = select(DatasetAnalysis).where(
        DatasetAnalysis.dataset_id == dataset_id,
        DatasetAnalysis.base_model_id == base_model_id,
        DatasetAnalysis.max_seq_length == max_seq_length,
        DatasetAnalysis.system_prompt.is_(None) if system_prompt is None
        else DatasetAnalysis.system_prompt == system_prompt,
        DatasetAnalysis.status.in_(LIVE),
    )
    return session.scalars(query.order_by(DatasetAnalysis.id.desc()).limit(1)).first()


def latest(session: Session, dataset_id: int) -> DatasetAnalysis | None:
    """The dataset's most recently requested analysis, in any state."""
    query = select(DatasetAnalysis).where(DatasetAnalysis.dataset_id == dataset_id)
    return session.scalars(query.order_by(DatasetAnalysis.id.desc()).limit(1)).first()


def list_for_dataset(session: Session, dataset_id: int, limit: int = 20) -> Sequence[DatasetAnalysis]:
    """A dataset's analyses, newest first."""
    query = select(DatasetAnalysis).where(DatasetAnalysis.dataset_id == dataset_id)
    return session.scalars(query.order_by(DatasetAnalysis.id.desc()).limit(limit)).all()


def transition(session: Session, analysis_id: int, from_: Sequence[str], **values: Any) -> bool:
    """Atomically move an analysis out of one of the given states; False if it was in none of them."""
    result = session.execute(
        update(DatasetAnalysis)
        .where(DatasetAnalysis.id == analysis_id, DatasetAnalysis.status.in_(list(from_)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
