"""Dataset doctor use cases: request an analysis (computed once per dataset, model, length and system prompt),
claim, finish."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.core import jobs
from app.core.db import utcnow
from app.core.errors import StudioError, not_found
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis
from app.core.repositories import analyses as analyses_repo
from app.core.repositories import catalog
from app.core.services import datasets as dataset_service
from worker.planning.spec import MAX_SEQ_LENGTH, MAX_SYSTEM_PROMPT, MIN_SEQ_LENGTH

ANALYZE_TASK = "datasets.analyze"
PAGE_ROWS = 20


@dataclass(frozen=True)
class RowsPage:
    """One page of a dataset's canonical rows, numbered from 1."""

    rows: list[tuple[int, dict[str, Any]]]
    page: int
    pages: int


def request_analysis(session: Session, dataset: Dataset, base_model_id: int, max_seq_length: int,
                     system_prompt: str | None = None) -> DatasetAnalysis:
    """Reuse a queued, running or succeeded analysis of the same dataset, model, length and system prompt (a run's
    data.system_prompt; blank is none); else queue a new one."""
    _check_length(max_seq_length)
    system_prompt = _system_prompt(system_prompt)
    if session.get(BaseModelEntry, base_model_id) is None:
        raise StudioError("invalid", "model_not_found", f"There is no base model {base_model_id}.",
                          field="base_model")
    existing = analyses_repo.find_reusable(session, dataset.id, base_model_id, max_seq_length, system_prompt)
    if existing is not None:
        return existing
    analysis = DatasetAnalysis(dataset_id=dataset.id, base_model_id=base_model_id, max_seq_length=max_seq_length,
                               system_prompt=system_prompt, status="queued", result={})
    session.add(analysis)
    session.flush()
    jobs.enqueue(session, ANALYZE_TASK, analysis_id=analysis.id)
    return analysis


def request_analysis_by_name(session: Session, dataset: Dataset, model: str, max_seq_length: int,
                             system_prompt: str | None = None) -> DatasetAnalysis:
    """request_analysis for a model named by its registered name or reference."""
    entry = catalog.find_model(session, model.strip()) if model.strip() else None
    if entry is None:
        raise StudioError("invalid", "model_not_found", f"No registered base model is named '{model}'; register "
                          "it on the Models page first.", field="base_model")
    return request_analysis(session, dataset, entry.id, max_seq_length, system_prompt)


def get_analysis(session: Session, dataset_id: int, analysis_id: int) -> DatasetAnalysis:
    """The dataset's analysis with that id, or 404."""
    analysis = analyses_repo.get(session, analysis_id)
    if analysis is None or analysis.dataset_id != dataset_id:
        raise not_found("analysis", analysis_id)
    return analysis


def latest_analysis(session: Session, dataset_id: int) -> DatasetAnalysis | None:
    """The dataset's most recently requested analysis, if any."""
    return analyses_repo.latest(session, dataset_id)


def claim_analysis(session: Session, analysis_id: int) -> bool:
    """Take a queued analysis; False if another delivery already did."""
    return analyses_repo.transition(session, analysis_id, ["queued"], status="running")


def finish_analysis(session: Session, analysis_id: int, result: dict[str, Any]) -> None:
    """Store the doctor's findings."""
    analyses_repo.transition(session, analysis_id, ["running"], status="succeeded", result=result,
                             error=None, finished_at=utcnow())


def fail_analysis(session: Session, analysis_id: int, error: str) -> None:
    """Record why an analysis could not be computed (a later request starts a fresh one)."""
    analyses_repo.transition(session, analysis_id, ["queued", "running"], status="failed", error=error[:4000],
                             finished_at=utcnow())


def _check_length(max_seq_length: int) -> None:
    if not MIN_SEQ_LENGTH <= max_seq_length <= MAX_SEQ_LENGTH:
        raise StudioError("invalid", "invalid_max_seq_length", f"The max sequence length must be between "
                          f"{MIN_SEQ_LENGTH} and {MAX_SEQ_LENGTH:,} tokens.", field="max_seq_length")


def _system_prompt(text: str | None) -> str | None:
    """The system prompt as DataSpec keeps it (stripped, blank is none), or invalid_system_prompt."""
    text = (text or "").strip() or None
    if text is not None and len(text) > MAX_SYSTEM_PROMPT:
        raise StudioError("invalid", "invalid_system_prompt", f"The system prompt is {len(text):,} characters "
                          f"long; data.system_prompt takes at most {MAX_SYSTEM_PROMPT:,}.", field="system_prompt")
    if text is not None and "\x00" in text:
        raise StudioError("invalid", "invalid_system_prompt", "The system prompt contains a NUL character; remove "
                          "it.", field="system_prompt")
    return text


def rows_page(session: Session, dataset: Dataset, page: int, size: int = PAGE_ROWS) -> RowsPage:
    """A page of canonical rows, read from the stored canonical blob by range: O(page) bytes, whatever the file."""
    pages = max(1, math.ceil(dataset.row_count / size))
    page = min(max(page, 1), pages)
    start = (page - 1) * size
    rows = dataset_service.canonical_rows(session, dataset, start, size)
    return RowsPage(list(enumerate(rows, start=start + 1)), page, pages)
