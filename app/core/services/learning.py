"""Did a finished run learn? The loss-based signal: a training loss that barely moved, or an evaluation loss that
stayed flat, means the adapter probably answers like its base model; the advice names the plan's length and the
stronger settings a one-click clone would use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core.models import Run, RunStatus
from app.core.repositories import runs as runs_repo
from worker.planning import sizing
from worker.planning.spec import RunSpec

# A training loss that fell by less than this share (first logged → the mean of the last few) moved too little.
MIN_TRAIN_DROP = 0.10
# An evaluation loss whose best point is within this share of its first stayed flat.
MIN_EVAL_DROP = 0.02
LAST_POINTS = 3


@dataclass(frozen=True)
class Verdict:
    """Why a run probably learned little, and the settings a stronger clone would change."""

    reasons: list[str]
    plan: str
    stronger: RunSpec
    changes: list[str]


def _drop(first: float, later: float) -> float:
    return (first - later) / first if first > 0 else 0.0


def judge(train: list[float], evals: list[float]) -> list[str]:
    """The reasons the losses say little was learned (empty: they moved enough, or there is too little to tell)."""
    train = [x for x in train if math.isfinite(x)]
    evals = [x for x in evals if math.isfinite(x)]
    reasons = []
    if len(train) >= 2:
        last = sum(train[-LAST_POINTS:]) / len(train[-LAST_POINTS:])
        if _drop(train[0], last) < MIN_TRAIN_DROP:
            reasons.append(f"the training loss barely moved: {train[0]:.3g} → {last:.3g} "
                           f"({-_drop(train[0], last):+.0%})")
    if len(evals) >= 2 and _drop(evals[0], min(evals[1:])) < MIN_EVAL_DROP:
        reasons.append(f"the evaluation loss stayed flat: {evals[0]:.3g} → {evals[-1]:.3g}")
    return reasons


def verdict(session: Session, run: Run, rows: int) -> Verdict | None:
    """The under-training verdict of a succeeded (or cancelled) run with `rows` examples, or None if it learned."""
    if run.run_status not in (RunStatus.succeeded, RunStatus.cancelled):
        return None
    points = runs_repo.metric_points(session, run.id)
    train = [float(p.values["loss"]) for p in points if isinstance(p.values.get("loss"), int | float)]
    evals = [float(p.values["eval_loss"]) for p in points if isinstance(p.values.get("eval_loss"), int | float)]
    reasons = judge(train, evals)
    if not reasons:
        return None
    try:
        spec = RunSpec.model_validate(run.spec)
    except ValidationError:  # a spec stored by an older studio that no longer validates: no advice to give
        return None
    stronger, changes = sizing.stronger(spec, rows)
    return Verdict(reasons, sizing.plan(spec, rows).describe(), stronger, changes)
