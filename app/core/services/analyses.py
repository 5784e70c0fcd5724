"""Dataset doctor use cases: request an analysis (computed once per dataset, model and length), claim, finish."""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.core import blobs, jobs
from app.core.datasets import iter_canonical
from app.core.db import utcnow
from app.core.errors import StudioError, not_found
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis
from app.core.repositories import analyses as analyses_repo
from app.core.repositories import catalog

ANALYZE_TASK = "datasets.analyze"
MIN_LENGTH, MAX_LENGTH = 8, 131072  # the bounds of a run's data.max_seq_length
PAGE_ROWS = 20


@dataclass(frozen=True)
class RowsPage:
    """One page of a dataset's canonical rows, numbered from 1."""

    rows: list[tuple[int, dict[str, Any]]]
    page: int
    pages: int


def request_analysis(session: Session, dataset: Dataset, base_model_id: int, max_seq_length: int) -> DatasetAnalysis:
    """Reuse a queued, running or succeeded analysis of the same triple; else queue a new one."""
    _check_length(max_seq_length)
    if session.get(BaseModelEntry, base_model_id) is None:
        raise StudioError("invalid", "model_not_found", f"There is no base model {base_model_id}.",
                          field="base_model")
    existing = analyses_repo.find_reusable(session, dataset.id, base_model_id, max_seq_length)
    if existing is not None:
        return existing
    analysis = DatasetAnalysis(dataset_id=dataset.id, base_model_id=base_model_id, max_seq_length=max_seq_length,
                               status="queued", result={})
    session.add(analysis)
    session.flush()
    jobs.enqueue(session, ANALYZE_TASK, analysis_id=analysis.id)
    return analysis


def request_analysis_by_name(session: Session, dataset: Dataset, model: str, max_seq_length: int) -> DatasetAnalysis:
    """request_analysis for a model named by its registered name or reference."""
    entry = catalog.find_model(session, model.strip()) if model.strip() else None
    if entry is None:
        raise StudioError("invalid", "model_not_found", f"No registered base model is named '{model}'; register "
                          "it on the Models page first.", field="base_model")
    return request_analysis(session, dataset, entry.id, max_seq_length)


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
    if not MIN_LENGTH <= max_seq_length <= MAX_LENGTH:
        raise StudioError("invalid", "invalid_max_seq_length", f"The max sequence length must be between "
                          f"{MIN_LENGTH} and {MAX_LENGTH:,} tokens.", field="max_seq_length")


def rows_page(session: Session, dataset: Dataset, page: int, size: int = PAGE_ROWS) -> RowsPage:
    """A page of canonical rows streamed from the stored blob; neither the file nor the rows are held whole."""
    pages = max(1, math.ceil(dataset.row_count / size))
    page = min(max(page, 1), pages)
    start = (page - 1) * size
    # The readers need a path (Parquet seeks), so the blob goes to a scratch file chunk by chunk.
    with tempfile.TemporaryDirectory(prefix="lorastudio-preview-") as scratch:
        raw = blobs.export_to_file(session, dataset.blob_id, Path(scratch) / f"raw.{dataset.file_type}")
        with contextlib.closing(iter_canonical(raw, dataset.file_type, dataset.format)) as rows:
            numbered = list(enumerate(islice(rows, start, start + size), start=start + 1))
    return RowsPage(numbered, page, pages)
