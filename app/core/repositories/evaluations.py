"""Queries and conditional updates on evaluations and their examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from app.core.access import visible
from app.core.models import Evaluation, EvaluationExample, User


def get(session: Session, evaluation_id: int) -> Evaluation | None:
    """An evaluation by id."""
    return session.get(Evaluation, evaluation_id)


def list_visible(session: Session, user: User, limit: int = 100) -> Sequence[Evaluation]:
    """The evaluations user may see, newest first."""
    query = select(Evaluation).order_by(Evaluation.id.desc()).limit(limit)
    return session.scalars(visible(query, Evaluation, user)).all()


def latest_succeeded_for_runs(session: Session, run_ids: Sequence[int]) -> dict[int, Evaluation]:
    """Each run's newest succeeded evaluation, by run id."""
    newest = (select(func.max(Evaluation.id)).where(Evaluation.run_id.in_(list(run_ids)),
                                                    Evaluation.status == "succeeded")
              .group_by(Evaluation.run_id))
    found = session.scalars(select(Evaluation).where(Evaluation.id.in_(newest))).all()
    return {e.run_id: e for e in found if e.run_id is not None}


def examples_page(session: Session, evaluation_id: int, part: str, offset: int, limit: int) -> Sequence[
        EvaluationExample]:
    """A page of an evaluation's examples: flips first (wrong → right, then right → wrong), then in row order."""
    order = case((EvaluationExample.flip == "fixed", 0), (EvaluationExample.flip == "regressed", 1), else_=2)
    query = (select(EvaluationExample)
             .where(EvaluationExample.evaluation_id == evaluation_id, EvaluationExample.part == part)
             .order_by(order, EvaluationExample.index).offset(offset).limit(limit))
    return session.scalars(query).all()


def count_examples(session: Session, evaluation_id: int, part: str) -> int:
    """How many examples of that part the evaluation stored."""
    query = select(func.count()).where(EvaluationExample.evaluation_id == evaluation_id,
                                       EvaluationExample.part == part)
    return session.scalar(query) or 0


def transition(session: Session, evaluation_id: int, from_: Sequence[str], *where: Any, **values: Any) -> bool:
    """Atomically move an evaluation out of one of the given states (and meeting `where`); False if it was in
    none of them."""
    result = session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.status.in_(list(from_)), *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
