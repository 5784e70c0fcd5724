"""The evaluation's job kind: the eval set's examples (with their scorer fields) and the adapter's files exported
for a `python -m worker.evaluation` child, its progress recorded, its results stored whole or not at all."""

from __future__ import annotations

import json
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
from worker.jobs.child import module_argv
from worker.jobs.runner import JobRunner
from worker.jobs.watched import WatchedJob


class EvaluationJob(WatchedJob):
    """Evaluation's part of the job runner: inputs in, progress recorded, one Result (or Error) concluded; a beat
    every BEAT_EVERY_S that also says whether a cancel was asked for or the attempt was handed on."""

    what, child_name = "evaluation", "The evaluator"

    @property
    def evaluation_id(self) -> int:
        return self.job_id

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

    def store_progress(self, session: Session) -> None:
        evaluation_service.record_progress(session, self.evaluation_id, self.done, self.total)

    def store_beat(self, session: Session) -> str:
        return evaluation_service.beat(session, self.evaluation_id, self.attempt)

    def store_cancelled(self, session: Session) -> None:
        evaluation_service.end_cancelled(session, self.evaluation_id)

    def store_failure(self, session: Session, why: str) -> None:
        evaluation_service.fail_evaluation(session, self.evaluation_id, why)

    def succeed(self, workdir: Path, data: dict) -> str:
        results = json.loads(Path(data["results"]).read_text())
        with session_scope(self.res.session_factory) as session:
            stored = evaluation_service.finish_evaluation(session, self.evaluation_id, results["summary"],
                                                          results["examples"])
        return "succeeded" if stored else "failed"


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
