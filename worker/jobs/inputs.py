"""A training job's inputs on this worker: the canonical data and resume checkpoint exported from the database,
the spec as submitted, and the TrainingInputs that say where this machine finds what the spec names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.core import blobs
from app.core.models import BaseModelEntry, Dataset, Run
from app.core.services import checkpoints
from app.core.services import datasets as dataset_service
from worker.jobs.child import module_argv
from worker.planning.inputs import Provenance, TrainingInputs, gguf_path
from worker.planning.spec import RunSpec


@dataclass(frozen=True)
class TrainerFiles:
    """The files a trainer child reads, under one work folder."""

    spec: Path
    inputs: Path
    out: Path
    resume: Path | None
    processes: int = 1  # the spec's resources.gpus: one trainer process per GPU

    def argv(self) -> list[str]:
        """`python -m worker.trainer SPEC --inputs INPUTS --out OUT [--resume CHECKPOINT]`; on several GPUs the same
        arguments through `python -m worker.trainer.launch --processes N` (torchrun)."""
        resume = ["--resume", self.resume] if self.resume else []
        args = [self.spec, "--inputs", self.inputs, "--out", self.out, *resume]
        if self.processes > 1:
            return module_argv("worker.trainer.launch", "--processes", str(self.processes), *args)
        return module_argv("worker.trainer", *args)


def resolve(run: Run, spec: RunSpec, dataset: Dataset, model: BaseModelEntry, data_path: Path) -> TrainingInputs:
    """Where this worker finds the run's model and data, and where they came from."""
    origin = Provenance(studio_run_id=run.id, run_name=run.name, dataset=dataset.name, dataset_rows=dataset.row_count,
                        dataset_sha256=dataset.sha256, model_name=model.name)
    return TrainingInputs(model_ref=model.ref, gguf_file=gguf_file(spec, model), data_path=str(data_path),
                          provenance=origin, resolved=run.resolved or {})


def gguf_file(spec: RunSpec, model: BaseModelEntry) -> str | None:
    """The GGUF file to load: checked again on this machine, where the folder is, so a name that leaves the
    registered folder (a '..', a symlink pointing out) is refused whatever the web checked or stored."""
    name = spec.model.gguf_file or model.gguf_file
    if name is not None and model.source == "local" and gguf_path(model.ref, name) is None:
        raise ValueError(f"model.gguf_file '{name[:255]}' is not a .gguf file inside the folder of the registered "
                         f"model '{model.name}'; name one that is, or leave model.gguf_file empty")
    return name


def export_training_inputs(session: Session, run_id: int, workdir: Path) -> TrainerFiles:
    """Stream the run's canonical dataset and newest checkpoint to workdir; write the spec and its inputs."""
    run = session.get(Run, run_id)
    dataset = session.get(Dataset, run.dataset_id)
    model = session.get(BaseModelEntry, run.base_model_id)
    canonical_id, _ = dataset_service.canonical_blob_ids(session, dataset)
    data = blobs.export_to_file(session, canonical_id, workdir / "data.jsonl")
    resume = checkpoints.export(session, run_id, workdir / "resume")
    spec = RunSpec.model_validate(run.spec)
    files = TrainerFiles(spec=workdir / "spec.json", inputs=workdir / "inputs.json", out=workdir / "out",
                         resume=resume, processes=spec.resources.gpus)
    files.spec.write_text(spec.model_dump_json(), encoding="utf-8")
    files.inputs.write_text(resolve(run, spec, dataset, model, data).model_dump_json(), encoding="utf-8")
    return files
