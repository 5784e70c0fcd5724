"""datasets.analyze: run the dataset doctor once for a queued analysis, however often the message arrives."""

from __future__ import annotations

import logging

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import analyses as analysis_service
from worker.celery_app import celery_app
from worker.jobs.analysis import analyze_dataset

log = logging.getLogger(__name__)


@celery_app.task(name="datasets.analyze")
def analyze(analysis_id: int) -> str:
    """Claim the analysis and compute it in a child process (a tokenizer, no weights); store result or error."""
    with session_scope(resources().session_factory) as session:
        claimed = analysis_service.claim_analysis(session, analysis_id)
    if not claimed:
        log.info("analysis %s was not queued (claimed elsewhere); skipping", analysis_id)
        return "skipped"
    return analyze_dataset(resources(), analysis_id)
