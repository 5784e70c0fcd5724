"""Presets over the API: the recipes, and one filled in with a model and dataset and fitted to the dataset's size
(what the designer does when a preset is applied, for the CLI and scripts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.core.errors import StudioError
from app.core.services import datasets as dataset_service
from app.deps import CurrentUser, OptionalRowIdQuery, SessionDep
from worker.planning import presets, sizing
from worker.planning.spec import RunSpec

router = APIRouter(prefix="/api", tags=["presets"])


@router.get("/presets")
def list_presets() -> list[dict[str, Any]]:
    """Every preset: key, title, description and its spec as shipped."""
    return [{"key": p.key, "title": p.title, "description": p.description, "spec": p.spec}
            for p in presets.presets().values()]


@router.get("/presets/{key}")
def preset_for(key: str, session: SessionDep, user: CurrentUser, dataset_id: OptionalRowIdQuery = None,
               model: str = "") -> dict[str, Any]:
    """The preset's spec with `model` and `dataset_id` filled in and, with a dataset, fitted to its size; the
    changes the fitting made, the plan's length, and a warning when it is still too short to learn much."""
    preset = presets.find(key)
    if preset is None:
        raise StudioError("not_found", "preset_not_found",
                          f"There is no preset {key[:100]!r}; choose one of {', '.join(presets.presets())}.")
    data = {**preset.overrides(), "name": ""}
    data["model"] = {**data.get("model", {}), "base_model": model[:500] or preset.spec.get("model", {}).get(
        "base_model", "")}
    data["data"] = {**data.get("data", {}), "dataset_id": dataset_id} if dataset_id else {
        **data.get("data", {}), "path": "placeholder"}
    spec = RunSpec.model_validate(data)
    out: dict[str, Any] = {"fitted": [], "plan": None, "warning": None}
    if dataset_id:
        rows = dataset_service.get_dataset(session, dataset_id, user=user).row_count
        spec, out["fitted"] = sizing.fit_to_dataset(spec, rows)
        out |= {"plan": sizing.plan(spec, rows).describe(), "warning": sizing.plan_warning(spec, rows)}
    return {"spec": spec.model_dump(mode="json"), **out}
