"""TrainingInputs: where this machine finds what a run's spec names, passed to the trainer beside the spec.

The spec stays as the person submitted it (a model's studio name, a dataset id); the job runner resolves it into
worker-local places (a model folder or hub id, the canonical JSONL it exported) and provenance (which studio run,
which dataset and its sha256), so the adapter's spec.yaml and model card are written once, and right.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.planning.spec import ModelSpec, RunSpec


def gguf_path(folder: str, name: str) -> Path | None:
    """The file `name` inside `folder`, symlinks resolved, or None when name is no plain GGUF file name or the
    file is missing or lies outside the folder (the studio's run checks and the worker's inputs both ask)."""
    try:
        ModelSpec.check_gguf_name(name)
        root = Path(folder).resolve()
        path = (root / name).resolve()
    except (ValueError, OSError):
        return None
    return path if path.is_relative_to(root) and path.is_file() else None


class Provenance(BaseModel):
    """Where a run's data and model came from, as the model card names them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    studio_run_id: int | None = Field(None, description="The studio's run id (None outside the studio)")
    run_name: str | None = None
    dataset: str = Field(..., description="The dataset as a person knows it: a studio name, or a file name")
    dataset_sha256: str = Field(..., description="sha256 of the file as uploaded (or as read by the CLI)")
    dataset_rows: int | None = None
    model_name: str | None = Field(None, description="The base model's studio name, where it has one")


class TrainingInputs(BaseModel):
    """The resolved inputs of one training job on this machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_ref: str = Field(..., description="A local model folder or a Hugging Face id, as from_pretrained takes it")
    gguf_file: str | None = Field(None, description="A GGUF checkpoint inside model_ref, where the model is one")
    data_path: str = Field(..., description="The examples in the studio's canonical JSONL, on this machine")
    provenance: Provenance | None = None
    resolved: dict[str, str] = Field(default_factory=dict, description="The run's 'auto' choices as its first attempt "
                                     "fixed them ({optimizer, compute_dtype}); empty on a first attempt")

    @field_validator("gguf_file")
    @classmethod
    def _plain_gguf_name(cls, value: str | None) -> str | None:
        return None if value is None else ModelSpec.check_gguf_name(value)

    @classmethod
    def from_spec(cls, spec: RunSpec) -> TrainingInputs:
        """Inputs read straight from a spec whose model and data.path are already local (tests, direct runs)."""
        return cls(model_ref=spec.model.base_model, gguf_file=spec.model.gguf_file, data_path=spec.data.path or "")
