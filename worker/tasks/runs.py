"""runs.execute: train one queued run, exactly once however often the message is delivered."""

from __future__ import annotations

import logging
import socket

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import runs as run_service
from worker.celery_app import celery_app
from worker.jobs.training import train_run

log = logging.getLogger(__name__)


@celery_app.task(name="runs.execute", bind=True)
def execute(self, run_id: int) -> str:  # noqa: ANN001
    """Claim the run; if another delivery already did, do nothing."""
    worker = self.request.hostname or socket.gethostname()  # the node name, distinct per worker on one host
    factory = resources().session_factory
    with session_scope(factory) as session:
        claim = run_service.claim_run(session, run_id, worker=worker)
    if claim is None:
        log.info("run %s was not queued (claimed elsewhere or cancelled); skipping", run_id)
        return "skipped"
    log.info("run %s: attempt %s on %s (resuming from step %s)", run_id, claim.attempt, worker, claim.resume_step)
    return train_run(resources(), claim, run_id)
