"""datasets.analyze: run the dataset doctor once for a queued analysis, however often the message arrives."""

from __future__ import annotations

import logging
import shutil
import uuid
from typing import Any

from app.core import blobs
from app.core.datasets import DatasetProblem, iter_canonical
from app.core.db import session_scope
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis
from app.core.resources import resources
from app.core.services import analyses as analysis_service
from worker.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name="datasets.analyze")
def analyze(analysis_id: int) -> str:
    """Claim the analysis, compute it in this process (a tokenizer, no weights), store result or error."""
    factory = resources().session_factory
    with session_scope(factory) as session:
        claimed = analysis_service.claim_analysis(session, analysis_id)
    if not claimed:
        log.info("analysis %s was not queued (claimed elsewhere); skipping", analysis_id)
        return "skipped"
    try:
        result = _compute(analysis_id)
    except Exception as exc:  # any failure must leave the analysis "failed", never "running"
        log.exception("analysis %s failed", analysis_id)
        with session_scope(factory) as session:
            analysis_service.fail_analysis(session, analysis_id, _describe(exc))
        return "failed"
    with session_scope(factory) as session:
        analysis_service.finish_analysis(session, analysis_id, result)
    return "succeeded"


def _compute(analysis_id: int) -> dict[str, Any]:
    """Export the dataset's blob, stream its canonical rows through the doctor with the model's tokenizer."""
    # Imported here, not at module level: the Celery parent process should not load torch before forking.
    from worker.trainer.doctor import analyze as run_doctor
    from worker.trainer.model import load_tokenizer_from

    res = resources()
    workdir = res.settings.work_dir / f"analysis-{analysis_id}-{uuid.uuid4().hex[:8]}"
    try:
        with session_scope(res.session_factory) as session:
            analysis = session.get(DatasetAnalysis, analysis_id)
            dataset = session.get(Dataset, analysis.dataset_id)
            model = session.get(BaseModelEntry, analysis.base_model_id)
            raw = blobs.export_to_file(session, dataset.blob_id, workdir / f"raw.{dataset.file_type}")
            file_type, format, limit = dataset.file_type, dataset.format, analysis.max_seq_length
            ref, gguf_file = model.ref, model.gguf_file
        tokenizer = load_tokenizer_from(ref, gguf_file)
        result = run_doctor(iter_canonical(raw, file_type, format), tokenizer, limit)
        return {**result, "format": format, "model": ref}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _describe(exc: Exception) -> str:
    """A message a person can act on: the dataset problem's own words, else the exception's."""
    if isinstance(exc, DatasetProblem):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
