"""Runs and evaluations whose worker vanished: queued again (a run to resume from its newest checkpoint, an
evaluation from its start), or failed after too many tries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.db import db_now, utcnow
from app.core.models import Evaluation, Run, RunStatus
from app.core.repositories import evaluations as evaluations_repo
from app.core.repositories import runs as runs_repo
from app.core.services.evaluations import EVALUATE_TASK
from app.core.services.runs import add_to_timeline, end_message, enqueue_execution


def reap_lost_runs(session: Session, silent_for: timedelta, max_attempts: int) -> dict[int, str]:
    """Deal with every running run silent for longer than silent_for; returns {run id: what was done}.

    Requeued ("queued") while the run has had fewer than max_attempts attempts, so a run that kills its
    worker each time (out of memory, say) stops after a bounded number of tries; "failed" after that;
    "cancelled" when a cancel was asked for. Each change is conditional on the run still being the same
    silent attempt, so a heartbeat arriving meanwhile, or another janitor, wins cleanly.
    """
    cutoff, seconds = db_now(session) - silent_for, int(silent_for.total_seconds())
    outcomes = {}
    for run in runs_repo.stale_running(session, cutoff):
        still_lost = (Run.attempts == run.attempts, Run.heartbeat_at < cutoff)
        if run.cancel_requested:
            outcome = _cancel(session, run, still_lost)
        elif run.attempts < max_attempts:
            outcome = _requeue(session, run, still_lost, seconds, max_attempts)
        else:
            outcome = _fail(session, run, still_lost, seconds)
        if outcome:
            outcomes[run.id] = outcome
    return outcomes


def _requeue(session: Session, run: Run, still_lost: tuple, seconds: int, max_attempts: int) -> str | None:
    # dispatched_to is cleared so that, should the send fail, the janitor's redispatch sends it again.
    if not runs_repo.transition(session, run.id, [RunStatus.running], *still_lost, status=RunStatus.queued,
                                heartbeat_at=None, dispatched_to=None):
        return None
    add_to_timeline(session, run.id, "requeued", f"Worker {run.worker} stopped sending heartbeats for over {seconds} s "
              f"(attempt {run.attempts} of {max_attempts}); queued again to resume from its newest checkpoint.",
              attempt=run.attempts, worker=run.worker)
    enqueue_execution(session, run.id)
    return RunStatus.queued.value


def _fail(session: Session, run: Run, still_lost: tuple, seconds: int) -> str | None:
    error = {"code": "worker_lost", "message": f"Its worker stopped sending heartbeats (for over {seconds} s) on "
             f"each of {run.attempts} attempts: it crashed, was killed or lost the database every time, so the "
             "run is not tried again."}
    if not runs_repo.transition(session, run.id, [RunStatus.running], *still_lost, status=RunStatus.failed,
                                finished_at=utcnow(), error_code=error["code"], error_message=error["message"]):
        return None
    add_to_timeline(session, run.id, "failed", end_message(RunStatus.failed, {}, error), code=error["code"])
    return RunStatus.failed.value


def _cancel(session: Session, run: Run, still_lost: tuple) -> str | None:
    if not runs_repo.transition(session, run.id, [RunStatus.running], *still_lost, status=RunStatus.cancelled,
                                finished_at=utcnow()):
        return None
    add_to_timeline(session, run.id, "cancelled", f"Cancelled: worker {run.worker} stopped before the run could stop "
              "cleanly, so it keeps no adapter.")
    return RunStatus.cancelled.value


def reap_lost_evaluations(session: Session, silent_for: timedelta, max_attempts: int) -> dict[int, str]:
    """Deal with every running evaluation silent for longer than silent_for, as reap_lost_runs does with runs:
    {evaluation id: "queued" (sent again after commit), "failed" or "cancelled"}."""
    cutoff, seconds = db_now(session) - silent_for, int(silent_for.total_seconds())
    silent = session.scalars(select(Evaluation).where(Evaluation.status == "running",
                                                      Evaluation.heartbeat_at < cutoff)).all()
    outcomes = {}
    for evaluation in silent:
        still_lost = (Evaluation.attempts == evaluation.attempts, Evaluation.heartbeat_at < cutoff)
        if evaluation.cancel_requested:
            outcome, values = "cancelled", {"finished_at": utcnow()}
        elif evaluation.attempts < max_attempts:
            outcome, values = "queued", {"heartbeat_at": None, "progress_done": 0}
        else:
            outcome, values = "failed", {"finished_at": utcnow(), "error": (
                f"Its worker stopped sending heartbeats (for over {seconds} s) on each of {evaluation.attempts} "
                "attempts: it crashed, was killed or lost the database every time, so it is not tried again.")}
        if evaluations_repo.transition(session, evaluation.id, ["running"], *still_lost, status=outcome, **values):
            outcomes[evaluation.id] = outcome
            if outcome == "queued":
                jobs.enqueue(session, EVALUATE_TASK, evaluation_id=evaluation.id)
    return outcomes
