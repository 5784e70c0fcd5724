"""Checks of a run spec against the studio's world (the chosen model, the live workers) before it is queued."""

from __future__ import annotations

from typing import Any

from app.core import model_config
from app.core.access import sees_everything
from app.core.errors import StudioError
from app.core.models import BaseModelEntry, User
from worker.planning.inputs import gguf_path
from worker.planning.spec import CUDA_ONLY_OPTIMIZERS, RunSpec


def check_fits_model(spec: RunSpec, model: BaseModelEntry, user: User | None = None) -> None:
    """The spec may name this model, its GGUF file lies inside the model's folder, and max_seq_length fits."""
    check_names_model(spec, model, user)
    check_gguf_file(spec, model)
    if model.source == "hub":  # hub ids: the context is unknown without a download, so skipped
        return
    context = model_config.context_length(model.ref)
    if context is not None and spec.data.max_seq_length > context:
        raise StudioError(
            "invalid", "longer_than_context",
            f"data.max_seq_length is {spec.data.max_seq_length}, but {model.name} has a context of {context} "
            f"tokens; choose {context} or less.", field="data.max_seq_length",
        )


def not_registered(base_model: str) -> StudioError:
    """The one answer for a model that is not registered, or that this user may not name so."""
    return StudioError("invalid", "model_not_registered", f"Base model '{base_model[:200]}' is not registered; "
                       "register it first (Models page or POST /api/models).", field="model.base_model")


def check_names_model(spec: RunSpec, model: BaseModelEntry, user: User | None) -> None:
    """Only admins may name a local model by its folder: for others a path is no name, whether registered or not
    (else the answer would tell them which paths are registered)."""
    if model.source == "local" and spec.model.base_model != model.name and not sees_everything(user):
        raise not_registered(spec.model.base_model)


def check_gguf_file(spec: RunSpec, model: BaseModelEntry) -> None:
    """A spec's gguf_file names a file inside the registered folder, symlinks resolved (hub files: the hub's)."""
    name = spec.model.gguf_file
    if name is None or model.source == "hub":
        return
    if gguf_path(model.ref, name) is None:
        raise StudioError("invalid", "gguf_not_in_model", f"{model.name} has no GGUF file '{name}'; name a .gguf "
                          "file inside the model's folder, or leave model.gguf_file empty.", field="model.gguf_file")


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
