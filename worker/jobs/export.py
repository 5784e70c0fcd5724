"""The export's job kind: a registered version's adapter files and its base exported for a `python -m worker.export`
child, which writes the format's files and verifies them by generation; its stages recorded as progress, its
verified files stored on the blob store whole (with the report) or not at all."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core import blobs
from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.eval_sets import read_examples
from app.core.generation.catalog import base_ref
from app.core.generation.protocol import AdapterRef
from app.core.models import (
    AdapterExport,
    AdapterVersion,
    BaseModelEntry,
    Dataset,
    Evaluation,
    GenerationSample,
    RegisteredAdapter,
)
from app.core.resources import Resources
from app.core.services import exports as export_service
from worker.export.inputs import ExportInputs
from worker.jobs.adapter_export import export_adapter
from worker.jobs.child import module_argv
from worker.jobs.runner import JobRunner
from worker.jobs.watched import WatchedJob

MAX_PROMPTS = 16
# When neither an evaluation nor the run's samples give prompts: general ones, short answers, several domains.
DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "What is 12 plus 30?",
    "Name three primary colours.",
    "Explain in one sentence what a computer program is.",
    "Translate 'good morning' into Spanish.",
    "Write a Python function that returns the square of a number.",
    "Give one tip for sleeping well.",
)


class ExportJob(WatchedJob):
    """Export's part of the job runner: inputs in, stages recorded, one Result (or Error) concluded; a beat every
    BEAT_EVERY_S that also says whether a cancel was asked for or the attempt was handed on."""

    what, child_name = "export", "The exporter"

    @property
    def export_id(self) -> int:
        return self.job_id

    def prepare(self, workdir: Path) -> list[str]:
        with session_scope(self.res.session_factory) as session:
            inputs = self._inputs(session, workdir)
        path = workdir / "inputs.json"
        path.write_text(inputs.model_dump_json())
        return module_argv("worker.export", path, "--out", workdir / "out")

    def _inputs(self, session: Session, workdir: Path) -> ExportInputs:
        export = session.get(AdapterExport, self.export_id)
        version = session.get(AdapterVersion, export.version_id) if export else None
        if export is None or version is None:
            raise StudioError("not_found", "export_not_found", f"Export {self.export_id} or its version is gone.")
        adapter = session.get(RegisteredAdapter, version.adapter_id)
        entry = session.get(BaseModelEntry, version.base_model_id) if version.base_model_id else None
        if entry is None:
            raise StudioError("not_found", "model_not_found", f"The base model {version.base_name} of "
                              f"{adapter.name}:v{version.version} is gone (unregistered), so it cannot be exported.")
        ref = AdapterRef(run_id=version.run_id or 0, version_id=version.id, sha256=version.sha256)
        export_adapter(session, ref, workdir / "adapter")
        return ExportInputs(format=export.format, base=base_ref(entry), adapter_dir=str(workdir / "adapter"),
                            adapter_sha256=version.sha256, stem=f"{adapter.name}-v{version.version}",
                            prompts=prompts_for(session, version, workdir / "eval-set"),
                            spec=(version.lineage or {}).get("spec"))

    def store_progress(self, session: Session) -> None:
        export_service.record_progress(session, self.export_id, self.stage, self.done, self.total)

    def store_beat(self, session: Session) -> str:
        return export_service.beat(session, self.export_id, self.attempt)

    def store_cancelled(self, session: Session) -> None:
        export_service.end_cancelled(session, self.export_id)

    def store_failure(self, session: Session, why: str) -> None:
        export_service.fail_export(session, self.export_id, why)

    def succeed(self, workdir: Path, data: dict) -> str:
        """The verified files stored with the report, or the export failed with why they could not be."""
        try:
            with session_scope(self.res.session_factory) as session:
                stored = export_service.finish_export(session, self.export_id, workdir / "out",
                                                      data.get("files") or [], data.get("report") or {})
        except StudioError as exc:
            return self.fail(exc.message)
        return "succeeded" if stored else "failed"


def prompts_for(session: Session, version: AdapterVersion, scratch: Path) -> list[str]:
    """The prompts an export is verified on (at most MAX_PROMPTS user messages): the eval set of the newest
    succeeded evaluation of the version or of its run, else the run's training samples, else DEFAULT_PROMPTS."""
    return (_evaluation_prompts(session, version, scratch) or _sample_prompts(session, version.run_id)
            or list(DEFAULT_PROMPTS))


def _evaluation_prompts(session: Session, version: AdapterVersion, scratch: Path) -> list[str]:
    mine = [Evaluation.adapter_version_id == version.id]
    if version.run_id is not None:
        mine.append(Evaluation.run_id == version.run_id)
    dataset_id = session.scalar(select(Evaluation.dataset_id).where(
        or_(*mine), Evaluation.status == "succeeded", Evaluation.dataset_id.is_not(None))
        .order_by(Evaluation.id.desc()).limit(1))
    dataset = session.get(Dataset, dataset_id) if dataset_id else None
    if dataset is None:
        return []
    path = blobs.export_to_file(session, dataset.blob_id, scratch.with_suffix(f".{dataset.file_type}"))
    try:
        examples = read_examples(path, dataset.file_type, dataset.format, MAX_PROMPTS)
    except StudioError:  # an eval set that no longer reads is no reason to refuse the export
        return []
    finally:
        path.unlink()
    return _distinct(_user_message(e) for e in examples)


def _user_message(example: dict) -> str:
    """An example's prompt as one user message: the prompt, or a chat's last user turn."""
    if "prompt" in example:
        return example["prompt"]
    return next((m["content"] for m in reversed(example["messages"]) if m["role"] == "user"), "")


def _sample_prompts(session: Session, run_id: int | None) -> list[str]:
    if run_id is None:
        return []
    prompts = session.scalars(select(GenerationSample.prompt).where(GenerationSample.run_id == run_id)
                              .order_by(GenerationSample.step, GenerationSample.prompt_index)
                              .limit(MAX_PROMPTS * 4)).all()
    return _distinct(_sample_text(p) for p in prompts)


def _sample_text(prompt: str) -> str:
    """A stored sample prompt as a user message (a chat stored as JSON: its last user turn)."""
    try:
        chat = json.loads(prompt)
    except ValueError:
        return prompt
    if isinstance(chat, list):
        users = [m.get("content", "") for m in chat if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else ""
    return prompt


def _distinct(prompts) -> list[str]:  # noqa: ANN001
    """Non-empty prompts, first occurrence kept, at most MAX_PROMPTS."""
    kept = list(dict.fromkeys(p for p in prompts if isinstance(p, str) and p.strip()))
    return kept[:MAX_PROMPTS]


def export(res: Resources, export_id: int, attempt: int) -> str:
    """Compute one claimed export (this attempt of it) to its end state."""
    workdir = res.settings.work_dir / f"export-{export_id}-{uuid.uuid4().hex[:8]}"
    runner = JobRunner(workdir, res.settings.trainer_allocator, res.settings.cancel_grace_s)
    return runner.run(ExportJob(res, export_id, attempt))
