"""Run use cases: create, cancel, claim, record progress, finish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from app.core import jobs
from app.core.access import can_see, owner_id
from app.core.advice import advice_for
from app.core.db import utcnow
from app.core.errors import StudioError, not_found
from app.core.models import Dataset, MetricPoint, Run, RunStatus, TimelineEntry, User
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import catalog
from app.core.repositories import runs as runs_repo
from app.core.services import run_checks
from worker.planning.reports import Log, Metric, Started
from worker.planning.spec import RunSpec

EXECUTE_TASK = "runs.execute"


def create_run(session: Session, spec: RunSpec, workers: list[dict[str, Any]] | None = None, *,
               user: User | None = None) -> Run:
    """Store a queued run owned by user with its exact spec, and enqueue it once the caller commits.

    `workers` are the live workers (None: unknown), to refuse settings no worker can run.
    """
    dataset = session.get(Dataset, spec.data.dataset_id) if spec.data.dataset_id is not None else None
    if dataset is None or not can_see(user, dataset.owner_id):  # someone else's reads as missing
        raise StudioError("invalid", "dataset_not_found", "Choose an uploaded dataset (data.dataset_id).",
                          field="data.dataset_id")
    model = catalog.find_model(session, spec.model.base_model)
    if model is None:
        raise StudioError("invalid", "model_not_registered", f"Base model '{spec.model.base_model}' is not "
                          "registered; register it first (Models page or POST /api/models).", field="model.base_model")
    if spec.model.trust_remote_code and not model.trust_remote_code:
        raise StudioError("invalid", "remote_code_not_allowed", f"Running code shipped with '{model.name}' is off: "
                          "an admin must register the model with trust_remote_code on. Set "
                          "model.trust_remote_code to false.", field="model.trust_remote_code")
    run_checks.check_fits_model(spec, model)
    run_checks.check_fits_workers(spec, workers)
    if not jobs.broker_available(session):
        raise StudioError("unavailable", "queue_unavailable", "The job queue (Redis) is not answering, so the "
                          "run was not created. Try again in a moment; runs already queued are kept and sent once "
                          "it is back.")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"path": None})})
    run = Run(name=spec.name or f"{spec.method}-{model.name}"[:200], status=RunStatus.queued, method=spec.method,
              spec=spec.model_dump(mode="json"), dataset_id=spec.data.dataset_id, base_model_id=model.id,
              owner_id=owner_id(user))
    session.add(run)
    session.flush()
    add_to_timeline(session, run.id, "queued", f"Queued: {spec.method} on {model.name}.")
    enqueue_execution(session, run.id)
    return run


def enqueue_execution(session: Session, run_id: int) -> None:
    """Send the run to the workers once the caller commits, noting which Redis instance took it."""
    jobs.enqueue(session, EXECUTE_TASK, on_sent=partial(_dispatched, run_id), run_id=run_id)


def _dispatched(run_id: int, bind, broker_id: str | None) -> None:  # noqa: ANN001
    runs_repo.mark_dispatched(bind, run_id, broker_id)


def redispatch_undelivered(session: Session, broker_id: str, grace: timedelta) -> list[int]:
    """Send again the queued runs whose message is not on this Redis (a failed send, or a restart lost it).

    A run sent twice is still trained once: the worker's claim is atomic.
    """
    sent = []
    for run_id in runs_repo.undelivered_queued(session, broker_id, utcnow() - grace):
        runs_repo.mark_dispatched(session.get_bind(), run_id, jobs.send(session, EXECUTE_TASK, {"run_id": run_id}))
        sent.append(run_id)
    return sent


def add_to_timeline(session: Session, run_id: int, kind: str, message: str, **data: Any) -> None:
    """Append to a run's timeline."""
    session.add(TimelineEntry(run_id=run_id, kind=kind, message=message[:2000], data=data))
    session.flush()


def get_run(session: Session, run_id: int, *, user: User | None = None) -> Run:
    """A run user may see, or a not-found error (someone else's run is as missing as one that never existed)."""
    run = runs_repo.get(session, run_id)
    if run is None or not can_see(user, run.owner_id):
        raise not_found("run", run_id)
    return run


def cancel_run(session: Session, run: Run) -> Run:
    """Cancel a queued run at once; ask a running one to stop; refuse a finished one."""
    now = utcnow()
    if runs_repo.transition(session, run.id, [RunStatus.queued], status=RunStatus.cancelled, finished_at=now,
                            cancel_requested=True):
        add_to_timeline(session, run.id, "cancelled", "Cancelled before it started.")
        session.refresh(run)
        return run
    if runs_repo.transition(session, run.id, [RunStatus.running], cancel_requested=True):
        add_to_timeline(session, run.id, "cancel_requested", "Cancel requested: stopping at the next step boundary.")
        session.refresh(run)
        return run
    session.refresh(run)
    raise StudioError("conflict", "run_finished", f"Run {run.id} is already {run.status}; nothing to cancel.")


@dataclass(frozen=True)
class Claim:
    """One attempt at a run, taken by a worker: its number, and the checkpoint step it continues from."""

    attempt: int
    resume_step: int | None


def claim_run(session: Session, run_id: int, worker: str) -> Claim | None:
    """Take a queued run for this worker; None if another delivery already took it (or it was cancelled)."""
    now = utcnow()
    if not runs_repo.transition(session, run_id, [RunStatus.queued], status=RunStatus.running, started_at=now,
                                heartbeat_at=now, worker=worker, attempts=Run.attempts + 1):
        return None
    attempt = runs_repo.attempts(session, run_id)
    checkpoint = artifacts_repo.latest_checkpoint(session, run_id)
    step = checkpoint[0] if checkpoint else None
    if attempt == 1:
        add_to_timeline(session, run_id, "started", f"Picked up by worker {worker}.")
    else:
        _begin_again(session, run_id, worker, attempt, step)
    return Claim(attempt=attempt, resume_step=step)


def _begin_again(session: Session, run_id: int, worker: str, attempt: int, step: int | None) -> None:
    """A later attempt replaces the points after its checkpoint (all of them, without one): none is kept twice.

    Their seqs are not given out again (runs.metric_seq only grows)."""
    dropped = runs_repo.drop_points_after(session, run_id, step or 0)
    runs_repo.touch(session, run_id, current_step=step or 0)
    where = f"from step {step}" if step else "from the beginning (no checkpoint had been stored)"
    add_to_timeline(session, run_id, "resumed", f"Resumed {where} on worker {worker} (attempt {attempt}).",
              from_step=step or 0, attempt=attempt, worker=worker, replaced_points=dropped)


def record_report(session: Session, run_id: int, report: Started | Log) -> None:
    """Keep what the trainer said about itself (device, library versions, sizes) or its progress in words."""
    if isinstance(report, Log):
        add_to_timeline(session, run_id, "log", report.message)
        return
    runs_repo.touch(session, run_id, device=report.device, versions=report.versions, total_steps=report.total_steps,
                    trainable_params=report.trainable_params, total_params=report.total_params)
    allocator = report.allocator  # the trainer's heap allocator (worker.planning.allocator)
    on = f"{report.device} ({allocator} malloc)" if allocator else report.device
    add_to_timeline(session, run_id, "training", f"Training on {on}: {report.total_steps} steps, "
                    f"{report.trainable_params} trainable of {report.total_params} parameters.",
                    **({"allocator": allocator} if allocator else {}))


def record_metrics(session: Session, run_id: int, points: list[Metric]) -> list[MetricPoint]:
    """Store metric points under the run's next seqs and move the run's progress forward."""
    first = runs_repo.take_seqs(session, run_id, len(points))
    rows = [MetricPoint(run_id=run_id, seq=first + i, step=p.step, values=p.values()) for i, p in enumerate(points)]
    session.add_all(rows)
    for row in rows:
        if "eval_loss" in row.values:
            add_to_timeline(session, run_id, "eval",
                            f"Evaluated at step {row.step}: eval loss {row.values['eval_loss']}.")
    losses = [r.values["loss"] for r in rows if isinstance(r.values.get("loss"), int | float)]
    progress: dict[str, Any] = {"current_step": max(r.step for r in rows)} if rows else {}
    if losses:
        progress["last_loss"] = losses[-1]
    runs_repo.touch(session, run_id, **progress)
    session.flush()
    return rows


def finish_run(session: Session, run_id: int, status: RunStatus, final: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, attempt: int | None = None) -> bool:
    """Move a running run to its end state with the trainer's final numbers or error.

    With `attempt`, only while the run is still that attempt's (not handed to another worker meanwhile).
    """
    error = error or {}
    same_attempt = [Run.attempts == attempt] if attempt is not None else []
    moved = runs_repo.transition(session, run_id, [RunStatus.running], *same_attempt, status=status,
                                 finished_at=utcnow(), final=final or {}, error_code=error.get("code"),
                                 error_message=error.get("message"), error_traceback=error.get("traceback"))
    if moved:
        add_to_timeline(session, run_id, status.value, end_message(status, final or {}, error), code=error.get("code"))
    return moved


def end_message(status: RunStatus, final: dict[str, Any], error: dict[str, Any]) -> str:
    """The timeline's sentence for a run's end (with the advice for a failure)."""
    if status == RunStatus.failed:
        return f"Failed ({error.get('code')}): {error.get('message')} {advice_for(error.get('code'))}"
    return f"{status.value.capitalize()} after {final.get('steps')} steps; final train loss {final.get('train_loss')}."


def adapter_files(session: Session, run: Run) -> list[tuple[str, int]]:
    """(name, blob id) of a run's adapter files; a conflict error while there are none yet."""
    files = [(a.name, a.blob_id) for a in runs_repo.artifacts(session, run.id)]
    if not files:
        raise StudioError("conflict", "no_adapter", f"Run {run.id} has no adapter yet (status {run.status}); it is "
                          "stored when the run succeeds or is cancelled.")
    return files
