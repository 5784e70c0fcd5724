"""Queries on a run's generation samples."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.core.models import GenerationSample

KIND_ORDER = {"base": 0, "eval": 1, "final": 2}


def of_run(session: Session, run_id: int) -> Sequence[GenerationSample]:
    """A run's samples: by prompt, then base, each sampled step, final."""
    rows = session.scalars(select(GenerationSample).where(GenerationSample.run_id == run_id)).all()
    return sorted(rows, key=lambda r: (r.prompt_index, KIND_ORDER.get(r.kind, 1), r.step))


def drop_round(session: Session, run_id: int, kind: str, step: int) -> None:
    """Delete one round's rows (an attempt that samples it again replaces them)."""
    session.execute(delete(GenerationSample).where(GenerationSample.run_id == run_id, GenerationSample.kind == kind,
                                                   GenerationSample.step == step)
                    .execution_options(synchronize_session=False))


def drop_after(session: Session, run_id: int, step: int) -> None:
    """Delete the adapter's rows past a step, and any final ones (a resumed attempt samples them again)."""
    later = or_(GenerationSample.step > step, GenerationSample.kind == "final")
    session.execute(delete(GenerationSample).where(GenerationSample.run_id == run_id, GenerationSample.kind != "base",
                                                   later).execution_options(synchronize_session=False))
