"""Housekeeping from a thread in every worker's main process: requeue (or, after too many tries, fail) runs and
evaluations whose worker vanished, send again the queued runs whose queue message was lost (Redis was down or
restarted), and the parked runs whose owner has a free running slot again (services.runs.claim_next)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from celery.signals import worker_ready
from sqlalchemy import text

from app.core import blob_staging
from app.core.db import session_scope
from app.core.resources import Resources
from app.core.services.exports import reap_lost_exports
from app.core.services.recovery import reap_lost_evaluations, reap_lost_runs
from app.core.services.runs import redispatch_undelivered, release_all_parked

log = logging.getLogger(__name__)
# Small against lost_after_s: a run whose worker died resumes elsewhere within lost_after_s + INTERVAL_S.
INTERVAL_S = 5
REDISPATCH_GRACE_S = 10  # a run younger than this may still be on its way to the queue
STAGED_SWEEP_ROUNDS = 720  # abandoned upload placeholders: hours old before they go, so once an hour is plenty


def sweep(res: Resources) -> dict[int, str]:
    """One pass over the runs that stopped beating: requeued, failed or cancelled; returns {id: new status}."""
    settings = res.settings
    silent_for = timedelta(seconds=settings.lost_after_s)
    with session_scope(res.session_factory) as session:
        reaped = reap_lost_runs(session, silent_for, settings.max_attempts)
    for run_id, status in reaped.items():
        log.warning("run %s lost its worker (no heartbeat for %ss); now %s", run_id, settings.lost_after_s, status)
    with session_scope(res.session_factory) as session:
        evaluations = reap_lost_evaluations(session, silent_for, settings.max_attempts)
    for evaluation_id, status in evaluations.items():
        log.warning("evaluation %s lost its worker (no heartbeat for %ss); now %s", evaluation_id,
                    settings.lost_after_s, status)
    with session_scope(res.session_factory) as session:
        exports = reap_lost_exports(session, silent_for, settings.max_attempts)
    for export_id, status in exports.items():
        log.warning("export %s lost its worker (no heartbeat for %ss); now %s", export_id, settings.lost_after_s,
                    status)
    return reaped


def redispatch(res: Resources) -> list[int]:
    """Send again the queued runs whose message this Redis does not hold (a failed send, or a restart)."""
    broker_id = res.redis.info("server")["run_id"]
    with session_scope(res.session_factory) as session:  # parked runs whose owner has a free slot again
        released = release_all_parked(session, res.settings.quota_running_runs)
    if released:
        log.info("sent queued runs %s again: their owners have a free running slot", released)
    with session_scope(res.session_factory) as session:
        sent = redispatch_undelivered(session, broker_id, timedelta(seconds=REDISPATCH_GRACE_S))
    if sent:
        log.warning("sent queued runs %s again: their messages were not on this Redis", sent)
    return sent


def sweep_staged(res: Resources) -> int:
    """Remove the blob placeholders a killed upload left behind (app.core.blob_staging)."""
    with session_scope(res.session_factory) as session:
        return blob_staging.sweep_abandoned(session)


def reachable(res: Resources) -> dict[int, str]:
    """One round that only checks the database answers (nothing is reaped)."""
    with session_scope(res.session_factory) as session:
        session.execute(text("SELECT 1"))
    return {}


def _sweep_forever(stop: threading.Event) -> None:
    # Its own engine and Redis client: the pool of the process-wide resources() is inherited by the pool
    # children Celery forks, and a database connection shared across a fork corrupts both sides.
    res = Resources()
    # Reaping waits one round after the database was unreachable (and after start-up): every live job runner
    # missed its heartbeats meanwhile too, and gets a round to beat again before its run looks lost.
    healthy, rounds = False, 0
    while not stop.wait(INTERVAL_S):
        healthy = _attempt(sweep if healthy else reachable, res)
        _attempt(redispatch, res)
        if rounds % STAGED_SWEEP_ROUNDS == 0:
            _attempt(sweep_staged, res)
        rounds += 1


def _attempt(chore: Callable[[Resources], object], res: Resources) -> bool:
    """Run one chore; False if it failed (the database or Redis may be away for a while: next round)."""
    try:
        chore(res)
    except Exception:
        log.warning("janitor %s failed", chore.__name__, exc_info=True)
        return False
    return True


@worker_ready.connect
def start_janitor(**_kwargs) -> None:  # noqa: ANN003
    """Sweep periodically while this worker runs (several workers sweeping is harmless: the update is atomic)."""
    threading.Thread(target=_sweep_forever, args=(threading.Event(),), daemon=True, name="janitor").start()
