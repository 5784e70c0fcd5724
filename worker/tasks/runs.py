"""runs.execute: start the fairest queued run, exactly once however often a message is delivered.

A message is a token for one run's worth of work (services.runs.claim_next): it names the run that sent it, but
the worker starts whichever queued run should go next (priority, then the owner with the fewest running runs,
then the owner served longest ago, then their oldest), so one user's many queued runs never hold back another
user's first."""

from __future__ import annotations

import logging
import os
import socket

from sqlalchemy.exc import OperationalError

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import runs as run_service
from worker.celery_app import celery_app
from worker.jobs.training import train_run
from worker.planning.device_classes import CLASS_ENV

log = logging.getLogger(__name__)
CLAIM_TRIES = 3  # a claim that meets a locked database (SQLite: another writer past its busy timeout) tries again


@celery_app.task(name="runs.execute", bind=True)
def execute(self, run_id: int) -> str:  # noqa: ANN001
    """Claim the fairest queued run; if none may start now (or another delivery took it), do nothing."""
    worker = self.request.hostname or socket.gethostname()  # the node name, distinct per worker on one host
    res = resources()
    for attempt in range(1, CLAIM_TRIES + 1):
        try:
            with session_scope(res.session_factory) as session:
                claimed = run_service.claim_next(session, run_id, worker=worker,
                                                 default_running=res.settings.quota_running_runs,
                                                 worker_class=os.environ.get(CLASS_ENV) or None)
            break
        except OperationalError:
            if attempt == CLAIM_TRIES:
                raise
            log.warning("claim for message of run %s met a busy database; trying again", run_id, exc_info=True)
    if claimed is None:
        log.info("run %s was not queued (claimed elsewhere or cancelled); skipping: no queued run may start now "
                 "(none left, or their owners are at their running-runs quota)", run_id)
        return "skipped"
    started, claim = claimed
    log.info("run %s: attempt %s on %s (resuming from step %s)", started, claim.attempt, worker, claim.resume_step)
    return train_run(res, claim, started)
