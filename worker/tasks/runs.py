"""runs.execute: train one queued run, exactly once however often the message is delivered."""

from __future__ import annotations

import logging
import socket

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import runs as run_service
from worker.celery_app import celery_app
from worker.launcher import Launcher

log = logging.getLogger(__name__)


@celery_app.task(name="runs.execute")
def execute(run_id: int) -> str:
    """Claim the run; if another delivery already did, do nothing."""
    factory = resources().session_factory
    with session_scope(factory) as session:
        claimed = run_service.claim_run(session, run_id, worker=socket.gethostname())
    if not claimed:
        log.info("run %s was not queued (claimed elsewhere or cancelled); skipping", run_id)
        return "skipped"
    return Launcher(run_id, resources()).run()
