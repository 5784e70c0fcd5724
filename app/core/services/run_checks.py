"""Checks of a run spec against the studio's world (the chosen model, the live workers) before it is queued."""

from __future__ import annotations

from typing import Any

from app.core import model_config
from app.core.errors import StudioError
from app.core.models import BaseModelEntry
from worker.planning.spec import CUDA_ONLY_OPTIMIZERS, RunSpec


def check_fits_model(spec: RunSpec, model: BaseModelEntry) -> None:
    """max_seq_length must not pass a local model's context (hub ids: unknown without a download, so skipped)."""
    if model.source == "hub":
        return
    context = model_config.context_length(model.ref)
    if context is not None and spec.data.max_seq_length > context:
        raise StudioError(
            "invalid", "longer_than_context",
            f"data.max_seq_length is {spec.data.max_seq_length}, but {model.name} has a context of {context} "
            f"tokens; choose {context} or less.", field="data.max_seq_length",
        )


def check_fits_workers(spec: RunSpec, workers: list[dict[str, Any]] | None) -> None:
    """Refuse CUDA-only optimizers when workers are live and none has CUDA; with none live the fleet is unknown."""
    if not workers or spec.training.optimizer not in CUDA_ONLY_OPTIMIZERS:
        return
    if not any(w.get("kind") == "cuda" for w in workers):
        devices = ", ".join(sorted({str(w.get("kind")) for w in workers}))
        raise StudioError(
            "invalid", "optimizer_needs_cuda",
            f"training.optimizer {spec.training.optimizer} needs a CUDA GPU, but the live workers have only "
            f"{devices}; choose adamw_torch or auto.", field="training.optimizer",
        )
