"""exports.run: make one queued export of a registered adapter version, however often the message arrives."""

from __future__ import annotations

import logging

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import exports as export_service
from worker.celery_app import celery_app
from worker.jobs.export import export

log = logging.getLogger(__name__)


@celery_app.task(name="exports.run")
def run_export(export_id: int) -> str:
    """Claim the export and make it in a child process (the model loaded there); store its verified files or why
    it failed."""
    with session_scope(resources().session_factory) as session:
        attempt = export_service.claim_export(session, export_id)
    if attempt is None:
        log.info("export %s was not queued (claimed elsewhere, or cancelled); skipping", export_id)
        return "skipped"
    return export(resources(), export_id, attempt)
