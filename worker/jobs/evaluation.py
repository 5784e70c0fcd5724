"""The evaluation's job kind: the eval set's examples (with their scorer fields) and the adapter's files exported
for a `python -m worker.evaluation` child, its progress recorded, its results stored whole or not at all."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.core import blobs
from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.eval_sets import read_examples
from app.core.generation.catalog import base_ref, parse_adapter_id
from app.core.generation.protocol import AdapterRef
from app.core.models import BaseModelEntry, Dataset, Evaluation
from app.core.resources import Resources
from app.core.services import evaluations as evaluation_service
from worker.evaluation.inputs import EvaluationInputs, JudgeConfig
from worker.evaluation.scorers import NEEDS
from worker.jobs.adapter_export import export_adapter
from worker.jobs.child import ChildProcess, module_argv
from worker.jobs.runner import JobRunner
from worker.planning.reports import Error, Metric, Report, Result, Started

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0
BEAT_EVERY_S = 2.0  # as a run's heartbeat: far below Settings.lost_after_s


class EvaluationJob:
    """Evaluation's part of the job runner: inputs in, progress recorded, one Result (or Error) concluded; a beat
    every BEAT_EVERY_S that also says whether a cancel was asked for or the attempt was handed on."""

    def __init__(self, res: Resources, evaluation_id: int, attempt: int) -> None:
        self.res, self.evaluation_id, self.attempt = res, evaluation_id, attempt
        self.result: Result | None = None
        self.error: Error | None = None
        self.total = 0
        self.done = 0
        self._recorded_at = 0.0
        self.state = "go"  # evaluation_service.beat's answer: go | cancel | lost
        self._beat_at = time.monotonic()

    def prepare(self, workdir: Path) -> list[str]:
        with session_scope(self.res.session_factory) as session:
            evaluation = session.get(Evaluation, self.evaluation_id)
            inputs = self._inputs(session, evaluation, workdir)
        path = workdir / "inputs.json"
        path.write_text(inputs.model_dump_json())
        return module_argv("worker.evaluation", path, "--out", workdir / "results.json")

    def _inputs(self, session: Session, evaluation: Evaluation, workdir: Path) -> EvaluationInputs:
        entry = session.get(BaseModelEntry, evaluation.base_model_id) if evaluation.base_model_id else None
        if entry is None:
            raise StudioError("not_found", "model_not_found", f"The base model {evaluation.base_name} is gone.")
        limit = evaluation.params["max_examples"]
        examples = self._examples(session, evaluation.dataset_id, workdir / "eval-set", limit)
        general = (self._examples(session, evaluation.general_dataset_id, workdir / "general-set", limit)
                   if evaluation.general_dataset_id else [])
        _check_fields(evaluation.scorers, examples)
        adapter = None
        if evaluation.run_id is not None or evaluation.adapter_sha256 is not None:
            _, step = parse_adapter_id(evaluation.model) or (None, None)  # run-<id>@step-<k>: that step's adapter
            adapter = AdapterRef(run_id=evaluation.run_id or 0, step=step, version_id=evaluation.adapter_version_id,
                                 sha256=evaluation.adapter_sha256 or "")
            export_adapter(session, adapter, workdir / "adapter")
        settings = self.res.settings
        judge = (JudgeConfig(base_url=settings.judge_base_url, api_key=settings.judge_api_key,
                             model=settings.judge_model, timeout_s=settings.judge_timeout_s)
                 if settings.judge_base_url else None)
        return EvaluationInputs(
            base=base_ref(entry), adapter=adapter, adapter_dir=str(workdir / "adapter") if adapter else None,
            examples=examples, general=general, scorers=evaluation.scorers,
            max_new_tokens=evaluation.params["max_new_tokens"], seed=evaluation.params["seed"],
            rubric=evaluation.params.get("rubric"), judge=judge, batch_size=settings.generation_max_batch)

    @staticmethod
    def _examples(session: Session, dataset_id: int | None, stem: Path, limit: int) -> list[dict[str, Any]]:
        dataset = session.get(Dataset, dataset_id) if dataset_id else None
        if dataset is None:
            raise StudioError("not_found", "dataset_not_found", f"The eval set (dataset {dataset_id}) is gone.")
        path = blobs.export_to_file(session, dataset.blob_id, stem.with_suffix(f".{dataset.file_type}"))
        examples = read_examples(path, dataset.file_type, dataset.format, limit)
        path.unlink()
        if not examples:
            raise StudioError("invalid", "no_usable_prompts", f"Dataset {dataset.id} has no row with a prompt.")
        return examples

    def handle(self, reports: list[Report]) -> None:
        for report in reports:
            if isinstance(report, Result):
                self.result = report
            elif isinstance(report, Error):
                self.error = report
            elif isinstance(report, Started):
                self.total = report.total_steps or 0
                self._record_progress(force=True)
            elif isinstance(report, Metric):
                self.done = report.step
                self._record_progress(force=self.done >= self.total)

    def _record_progress(self, force: bool) -> None:
        """Store done/total, at most once a second (and always at the start and the end)."""
        now = time.monotonic()
        if not force and now - self._recorded_at < PROGRESS_EVERY_S:
            return
        self._recorded_at = now
        try:
            with session_scope(self.res.session_factory) as session:
                evaluation_service.record_progress(session, self.evaluation_id, self.done, self.total)
        except Exception:  # progress is a courtesy: the outcome is stored by conclude
            log.warning("could not record evaluation %s's progress", self.evaluation_id, exc_info=True)

    def _beat(self) -> str:
        """Beat at most every BEAT_EVERY_S; a database that does not answer keeps the last answer (the janitor
        waits lost_after_s before it takes the evaluation back)."""
        now = time.monotonic()
        if self.state == "go" and now - self._beat_at >= BEAT_EVERY_S:
            self._beat_at = now
            try:
                with session_scope(self.res.session_factory) as session:
                    self.state = evaluation_service.beat(session, self.evaluation_id, self.attempt)
            except Exception:
                log.warning("could not beat for evaluation %s", self.evaluation_id, exc_info=True)
        return self.state

    def abandoned(self) -> bool:
        return self._beat() == "lost"  # reaped as lost and handed on: this attempt stores nothing

    def cancel_requested(self) -> bool:
        return self._beat() == "cancel"

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        returncode = child.wait()
        if self.state == "lost":
            return "abandoned"
        if self.state == "cancel":
            with session_scope(self.res.session_factory) as session:
                evaluation_service.end_cancelled(session, self.evaluation_id)
            return "cancelled"
        if self.result is not None and returncode == 0:
            results = json.loads(Path(self.result.data["results"]).read_text())
            with session_scope(self.res.session_factory) as session:
                stored = evaluation_service.finish_evaluation(session, self.evaluation_id, results["summary"],
                                                              results["examples"])
            return "succeeded" if stored else "failed"
        why = self.error.message if self.error else f"The evaluator exited with code {returncode}: " \
            f"{child.stderr_tail()}"
        return self._fail(why)

    def prepare_failed(self, exc: Exception) -> str:
        return self._fail(exc.message if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}")

    def _fail(self, why: str) -> str:
        """Any failure leaves the evaluation "failed" with its reason, and no example stored."""
        with session_scope(self.res.session_factory) as session:
            evaluation_service.fail_evaluation(session, self.evaluation_id, why)
        return "failed"


def _check_fields(scorers: list[str], examples: list[dict[str, Any]]) -> None:
    """A scorer that reads a row field (regex: pattern, …) needs at least one row that has it."""
    for scorer, field in NEEDS.items():
        if scorer in scorers and not any(field in e for e in examples):
            raise StudioError("invalid", "scorer_field_missing", f"The {scorer} scorer reads each row's "
                              f"\"{field}\", and no row of the eval set has one.", field="scorers")


def evaluate(res: Resources, evaluation_id: int, attempt: int) -> str:
    """Compute one claimed evaluation (this attempt of it) to its end state."""
    workdir = res.settings.work_dir / f"evaluation-{evaluation_id}-{uuid.uuid4().hex[:8]}"
    runner = JobRunner(workdir, res.settings.trainer_allocator, res.settings.cancel_grace_s)
    return runner.run(EvaluationJob(res, evaluation_id, attempt))
