"""The dataset doctor's job kind: one claimed analysis, computed by a `python -m worker.trainer.analysis_job` child
on the dataset's canonical rows (stored once, at upload)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from app.core import blobs
from app.core.db import session_scope
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis
from app.core.resources import Resources
from app.core.services import analyses as analysis_service
from app.core.services import datasets as dataset_service
from worker.jobs.child import ChildProcess, module_argv
from worker.jobs.runner import JobRunner
from worker.planning.reports import Error, Report, Result

log = logging.getLogger(__name__)


class AnalysisJob:
    """The doctor's part of the job runner: rows and tokenizer in, one Result (or Error) stored."""

    def __init__(self, res: Resources, analysis_id: int) -> None:
        self.res, self.analysis_id = res, analysis_id
        self.result: Result | None = None
        self.error: Error | None = None
        self.facts: dict[str, str] = {}

    def prepare(self, workdir: Path) -> list[str]:
        with session_scope(self.res.session_factory) as session:
            analysis = session.get(DatasetAnalysis, self.analysis_id)
            dataset = session.get(Dataset, analysis.dataset_id)
            model = session.get(BaseModelEntry, analysis.base_model_id)
            canonical_id, _ = dataset_service.canonical_blob_ids(session, dataset)
            rows = blobs.export_to_file(session, canonical_id, workdir / "canonical.jsonl")
            self.facts = {"format": dataset.format, "model": model.ref}
            gguf = ["--gguf-file", model.gguf_file] if model.gguf_file else []
            # One argument with "=": a system prompt starting with "-" must not read as an option.
            system = [f"--system-prompt={analysis.system_prompt}"] if analysis.system_prompt else []
            return module_argv("worker.trainer.analysis_job", rows, "--model", model.ref, *gguf,
                               "--max-seq-length", str(analysis.max_seq_length), *system)

    def handle(self, reports: list[Report]) -> None:
        for report in reports:
            if isinstance(report, Result):
                self.result = report
            elif isinstance(report, Error):
                self.error = report

    def abandoned(self) -> bool:
        return False  # an analysis is claimed once and never handed on

    def cancel_requested(self) -> bool:
        return False  # analyses are short and cannot be cancelled

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        returncode = child.wait()
        if self.result is not None and returncode == 0:
            with session_scope(self.res.session_factory) as session:
                analysis_service.finish_analysis(session, self.analysis_id, {**self.result.data, **self.facts})
            return "succeeded"
        why = self.error.message if self.error else f"The doctor exited with code {returncode}: {child.stderr_tail()}"
        return self._fail(why)

    def prepare_failed(self, exc: Exception) -> str:
        return self._fail(f"{type(exc).__name__}: {exc}")

    def _fail(self, why: str) -> str:
        """Any failure leaves the analysis "failed", never "running" (a later request starts a fresh one)."""
        with session_scope(self.res.session_factory) as session:
            analysis_service.fail_analysis(session, self.analysis_id, why)
        return "failed"


def analyze_dataset(res: Resources, analysis_id: int) -> str:
    """Compute one claimed analysis to its end state."""
    workdir = res.settings.work_dir / f"analysis-{analysis_id}-{uuid.uuid4().hex[:8]}"
    runner = JobRunner(workdir, res.settings.trainer_allocator, res.settings.cancel_grace_s)
    return runner.run(AnalysisJob(res, analysis_id))
