"""Run use cases: create, cancel, claim, record progress, finish."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import blobs, jobs
from app.core.access import can_see, owner_id
from app.core.advice import advice_for
from app.core.config import Settings, get_settings
from app.core.db import db_now, utcnow
from app.core.errors import StudioError, not_found
from app.core.models import Dataset, MetricPoint, Run, RunStatus, TimelineEntry, User
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import catalog
from app.core.repositories import runs as runs_repo
from app.core.services import estimates, placement, quotas, run_checks
from worker.planning.reports import Log, Metric, Started
from worker.planning.spec import RunSpec

EXECUTE_TASK = "runs.execute"
NAME_LENGTH = 200  # runs.name's width
CLONE_SUFFIX = re.compile(r" \(\d+\)$")


def create_run(session: Session, spec: RunSpec, workers: list[dict[str, Any]] | None = None, *,
               user: User | None = None, priority: int = 0, settings: Settings | None = None) -> Run:
    """Store a queued run owned by user with its exact spec, and enqueue it once the caller commits.

    `workers` are the live workers (None: unknown), to refuse settings no worker can run. `priority` (not part of
    the spec) orders it among queued runs; user's quotas (services.quotas; `settings` has the studio defaults) are
    checked first.
    """
    settings = settings or get_settings()
    check_priority(priority, user, settings)
    quotas.check_can_queue(session, user, settings)
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
    run_checks.check_fits_model(spec, model, user)
    run_checks.check_fits_workers(spec, workers)
    if not jobs.broker_available(session):
        raise StudioError("unavailable", "queue_unavailable", "The job queue (Redis) is not answering, so the "
                          "run was not created. Try again in a moment; runs already queued are kept and sent once "
                          "it is back.")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"path": None})})
    device_class = placement.route_run(session, spec, workers)
    run = Run(name=spec.name or f"{spec.method}-{model.name}"[:200], status=RunStatus.queued, method=spec.method,
              spec=spec.model_dump(mode="json"), dataset_id=spec.data.dataset_id, base_model_id=model.id,
              owner_id=owner_id(user), priority=priority, device_class=device_class,
              estimate=estimates.launch_estimate(session, spec, workers, user=user))
    session.add(run)
    session.flush()
    add_to_timeline(session, run.id, "queued", f"Queued: {spec.method} on {model.name}"
                    f"{placement.describe(device_class, workers)}.", device_class=device_class)
    enqueue_execution(session, run.id)
    return run


def check_priority(priority: int, user: User | None, settings: Settings) -> None:
    """Refuse a priority outside ±max_run_priority, or above 0 from a user who is not an admin."""
    bound = settings.max_run_priority
    if not -bound <= priority <= bound:
        raise StudioError("invalid", "priority_out_of_range", f"priority must be between {-bound} and {bound} "
                          f"(higher starts first; 0 is the default), not {priority}.", field="priority")
    if priority > 0 and user is not None and not user.is_admin:
        raise StudioError("forbidden", "priority_admin_only", "Only an admin can raise a run's priority above 0; "
                          "you may lower your own (a negative priority lets your other runs go first).",
                          field="priority")


def set_priority(session: Session, run: Run, priority: int, *, user: User | None = None,
                 settings: Settings | None = None) -> Run:
    """Change a queued run's priority (user: its owner may lower it, an admin set any); a started run's is final."""
    check_priority(priority, user, settings or get_settings())
    if not runs_repo.transition(session, run.id, [RunStatus.queued], priority=priority):
        session.refresh(run)
        raise StudioError("conflict", "run_not_queued", f"Run {run.id} is already {run.status}: only a queued "
                          "run's priority can change.", field="priority")
    add_to_timeline(session, run.id, "priority", f"Priority set to {priority}.", priority=priority)
    session.refresh(run)
    return run


def enqueue_execution(session: Session, run_id: int) -> None:
    """Send the run to the workers of its device class once the caller commits, noting which Redis instance took
    it."""
    jobs.enqueue(session, EXECUTE_TASK, on_sent=partial(_dispatched, run_id),
                 device_class=runs_repo.device_class_of(session, run_id), run_id=run_id)


def _dispatched(run_id: int, bind, broker_id: str | None) -> None:  # noqa: ANN001
    runs_repo.mark_dispatched(bind, run_id, broker_id)


def redispatch_undelivered(session: Session, broker_id: str, grace: timedelta) -> list[int]:
    """Send again the queued runs whose message is not on this Redis (a failed send, or a restart lost it).

    A run sent twice is still trained once: the worker's claim is atomic.
    """
    sent = []
    for run_id in runs_repo.undelivered_queued(session, broker_id, utcnow() - grace):
        broker_id = jobs.send(session, EXECUTE_TASK, {"run_id": run_id}, runs_repo.device_class_of(session, run_id))
        runs_repo.mark_dispatched(session.get_bind(), run_id, broker_id)
        sent.append(run_id)
    return sent


def clone_name(session: Session, run: Run, *, user: User | None = None) -> str:
    """The name user's copy of run starts with: its name (less an earlier copy's suffix) with the first " (n)" from 2
    that none of user's runs has, so a clone is never mistaken for its source."""
    base = CLONE_SUFFIX.sub("", run.name)
    taken = runs_repo.names_starting(session, owner_id(user), base[:100])  # every candidate starts so, however long
    return next(name for n in itertools.count(2) if (name := _suffixed(base, n)) not in taken)


def _suffixed(base: str, n: int) -> str:
    suffix = f" ({n})"
    return base[:NAME_LENGTH - len(suffix)] + suffix


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
    """Take this queued run for this worker; None if another delivery already took it (or it was cancelled)."""
    now = utcnow()
    if not runs_repo.transition(session, run_id, [RunStatus.queued], status=RunStatus.running, started_at=now,
                                heartbeat_at=db_now(session), worker=worker, attempts=Run.attempts + 1):
        return None
    return _started(session, run_id, worker)


def claim_next(session: Session, named_run_id: int, worker: str, default_running: int = 0,
               worker_class: str | None = None) -> tuple[int, Claim] | None:
    """Take the fairest queued run for this worker (runs_repo.fairest_queued): (its id, the claim), or None when no
    queued run may start now.

    A `runs.execute` message is a token for one run's worth of work, not an order to start the run it names: each
    queued run has sent one, so whichever message a worker takes, it starts the run that should go next. The run it
    named, if still queued, counts on the started run's message instead; a message that starts nothing (every queued
    run's owner is at their running-runs quota) parks one, sent again when its owner has a free slot
    (release_parked). `default_running` is the studio's running-runs quota (Settings.quota_running_runs).

    Only runs of the named run's device class compete: its message came through that class's queue, which this
    worker consumes because it can run them. A run routed to any worker is pinned to `worker_class` (this worker's
    class) as it starts, so a requeue sends it where its checkpoint and resolved choices fit.
    """
    now = utcnow()
    device_class = runs_repo.device_class_of(session, named_run_id)
    run_id = runs_repo.claim_fairest(session, default_running, device_class, started_at=now,
                                     heartbeat_at=db_now(session), worker=worker, attempts=Run.attempts + 1)
    if run_id is None:
        runs_repo.park(session, named_run_id)
        return None
    # Stamped again now that the claim holds: the clock read above can predate a wait for another writer (SQLite's
    # write lock), and that writer may be the end of the run whose slot this one takes, stamped after `now`.
    runs_repo.touch(session, run_id, started_at=utcnow())  # the heartbeat too
    if device_class is None and worker_class is not None:
        runs_repo.transition(session, run_id, [RunStatus.running], Run.device_class.is_(None),
                             device_class=worker_class)
    runs_repo.pass_message(session, run_id, named_run_id)
    return run_id, _started(session, run_id, worker)


def release_parked(session: Session, owner_id: int | None, default_running: int | None = None) -> list[int]:
    """Send again (once the caller commits) as many of one owner's parked runs as they have free running slots."""
    parked = runs_repo.parked(session, owner_id)
    if not parked:
        return []
    limit = _running_limit(session, owner_id, default_running)
    free = len(parked) if not limit else max(0, limit - runs_repo.running_count(session, owner_id))
    sent = []
    for run in parked[:free]:
        if runs_repo.transition(session, run.id, [RunStatus.queued], Run.dispatched_to == runs_repo.PARKED,
                                dispatched_to=None):
            enqueue_execution(session, run.id)
            sent.append(run.id)
    return sent


def release_all_parked(session: Session, default_running: int | None = None) -> list[int]:
    """release_parked for every owner with parked runs (the janitor's safety net: quotas raised, runs reaped)."""
    owners = {run.owner_id for run in runs_repo.parked(session, every_owner=True)}
    return [run_id for owner in sorted(owners, key=lambda o: o or 0)
            for run_id in release_parked(session, owner, default_running)]


def _running_limit(session: Session, owner_id: int | None, default_running: int | None) -> int:
    user = session.get(User, owner_id) if owner_id is not None else None
    own = user.max_running_runs if user is not None else None
    if own is not None:
        return own
    return get_settings().quota_running_runs if default_running is None else default_running


def _started(session: Session, run_id: int, worker: str) -> Claim:
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
    # Steps past the resume point are trained again: the lost attempt's adapters of them are not this run's.
    stale = artifacts_repo.step_adapters_after(session, run_id, step or 0)
    blobs.collect_garbage(session, artifacts_repo.delete_all(session, stale))
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
    # Kept from the first attempt that fixed them; a later one was given them and only reuses them.
    if report.resolved and not session.scalar(select(Run.resolved).where(Run.id == run_id)):
        runs_repo.touch(session, run_id, resolved=report.resolved)
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
        release_parked(session, session.scalar(select(Run.owner_id).where(Run.id == run_id)))  # a slot is free
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
        raise StudioError("conflict", "no_adapter", f"Run {run.id} {why_no_adapter(run)}")
    return files


def why_no_adapter(run: Run) -> str:
    """Why a run has no adapter to download, in its state's words (the end of a sentence after "Run N")."""
    if run.status == RunStatus.queued:
        return "has not started yet: its adapter is stored when it ends."
    if run.status == RunStatus.running and run.cancel_requested:
        return "is stopping: the adapter trained so far is stored in a moment."
    if run.status == RunStatus.running:
        return "is still training: its adapter is stored when it ends."
    if run.status == RunStatus.failed:
        return f"failed ({run.error_code}), so it has no adapter; see its error on the run page."
    if run.status == RunStatus.cancelled and run.started_at is None:
        return "was cancelled before it started, so it has no adapter."
    return f"{run.status} without storing an adapter (it stopped before one was saved)."
