"""evaluations.run: compute one queued evaluation, however often the message arrives."""

from __future__ import annotations

import logging

from app.core.db import session_scope
from app.core.resources import resources
from app.core.services import evaluations as evaluation_service
from worker.celery_app import celery_app
from worker.jobs.evaluation import evaluate

log = logging.getLogger(__name__)


@celery_app.task(name="evaluations.run")
def run_evaluation(evaluation_id: int) -> str:
    """Claim the evaluation and compute it in a child process (the model loaded there); store results or error."""
    with session_scope(resources().session_factory) as session:
        attempt = evaluation_service.claim_evaluation(session, evaluation_id)
    if attempt is None:
        log.info("evaluation %s was not queued (claimed elsewhere, or cancelled); skipping", evaluation_id)
        return "skipped"
    return evaluate(resources(), evaluation_id, attempt)
