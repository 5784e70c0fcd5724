"""The run designer: a form generated from RunSpec (or a pasted YAML spec) with presets, a live estimate of
memory and time, and YAML export; submitting it creates a queued run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core import workers
from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.models import User
from app.core.repositories import catalog
from app.core.services import datasets as dataset_service
from app.core.services import estimates as estimate_service
from app.core.services import runs as run_service
from app.deps import CurrentUser, OptionalRowIdQuery, SessionDep, SettingsDep
from app.pages import spec_form
from app.pages.forms import FormDep
from app.pages.templating import render
from worker.planning import presets, safe_yaml, sizing
from worker.planning.safe_yaml import YamlLimits, YamlRefused
from worker.planning.spec import RunSpec

router = APIRouter()


def _designer(request: Request, session: Session, user: User, values: dict[str, Any],
              errors: dict[str, str] | None = None, spec_yaml: str = "",
              status_code: int = 200, preset: str = "", fitted: list[str] | None = None) -> HTMLResponse:
    devices = estimate_service.devices(workers.live_workers(request.app.state.resources.redis))
    device = values.get("estimate_device") or next(iter(devices))
    context = {"nav": "new", "sections": spec_form.sections(), "values": values, "errors": errors or {},
               "datasets": catalog.list_datasets(session, user), "models": catalog.list_models(session),
               "spec_yaml": spec_yaml, "presets": presets.presets().values(), "preset": preset,
               "devices": devices, "device": device, "fitted": fitted or [],
               **_panel(session, user, values, device, devices)}
    return render(request, "runs/new.html", context, status_code=status_code)


def _panel(session: Session, user: User, values: dict[str, Any], device: str, devices: dict) -> dict[str, Any]:
    """The estimate panel's context: the estimate, and the plan's length against the dataset."""
    spec = _draft_spec(values)
    if spec is None:
        return {"estimate": None, "plan_check": None}
    profile = devices.get(device) or estimate_service.pick_device(device, [])
    return {"estimate": estimate_service.estimate_run(session, spec, profile, user=user),
            "plan_check": _plan_check(spec, _rows(session, user, spec))}


def _draft_spec(values: dict[str, Any]) -> RunSpec | None:
    """The spec the form values describe, or None while they do not validate."""
    # Blank and unchecked fields are left out, so their defaults apply while the form is being filled in.
    present = {k: v for k, v in values.items() if v is not None and v is not False and v != ""}
    form = {k: ("on" if v is True else str(v)) for k, v in present.items()}
    data = spec_form.parse(form)
    if not (data.get("data") or {}).get("dataset_id"):
        data.setdefault("data", {})["path"] = "unchosen"  # size the rest before a dataset is picked
    try:
        return RunSpec.model_validate(data)
    except ValidationError:
        return None


def _rows(session: Session, user: User, spec: RunSpec) -> int | None:
    """The chosen dataset's row count, if the user may see it."""
    if not spec.data.dataset_id:
        return None
    try:
        return dataset_service.get_dataset(session, spec.data.dataset_id, user=user).row_count
    except StudioError:
        return None


def _plan_check(spec: RunSpec, rows: int | None) -> dict[str, Any] | None:
    """The plan's length on the dataset, with a warning and the fitted settings when it is too short to learn."""
    if not rows:
        return None
    _, changes = sizing.fit_to_dataset(spec, rows)
    return {"plan": sizing.plan(spec, rows).describe(), "warning": sizing.plan_warning(spec, rows), "fit": changes}


def _create(request: Request, session: Session, user: User, spec: RunSpec, priority: int = 0) -> Response:
    # The live workers, so a setting none of them can run is refused here as it is by the API.
    res = request.app.state.resources
    run = run_service.create_run(session, spec, workers.live_workers(res.redis), user=user, priority=priority,
                                 settings=res.settings)
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


def _priority(form: dict[str, str]) -> int:
    """The form's run priority (not part of the spec); blank: 0."""
    text = (form.get("priority") or "0").strip()
    try:
        return int(text)
    except ValueError:
        raise StudioError("invalid", "invalid_priority", f"priority must be a whole number (0: normal, negative: "
                          f"after your other runs), not '{text[:20]}'.", field="priority") from None


@router.get("/runs/new")
def new_run(request: Request, session: SessionDep, user: CurrentUser, clone: OptionalRowIdQuery = None,
            preset: str = "") -> HTMLResponse:
    """The empty designer, one pre-filled from an earlier run's spec (the user's own) under a new name, or one set
    up by a preset."""
    values = _cloned(session, user, clone) if clone else spec_form.defaults()
    return _designer(request, session, user, _with_preset(values, preset), preset=preset)


def _cloned(session: Session, user: User, run_id: int) -> dict[str, Any]:
    """Form values of a run's spec, named "<its name> (2)" (or the next number the user has not used)."""
    run = run_service.get_run(session, run_id, user=user)
    return {**spec_form.from_spec(run.spec), "name": run_service.clone_name(session, run, user=user)}


@router.post("/runs/new/preset")
def apply_preset(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """The designer as posted, with the chosen preset's settings (its name, model and data stay), fitted to the
    chosen dataset's size."""
    preset = form.get("preset", "")
    values, fitted = _fitted(session, user, _with_preset(spec_form.from_form(form), preset))
    return _designer(request, session, user, values, preset=preset, fitted=fitted)


@router.post("/runs/new/fit")
def fit_to_dataset(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """The designer as posted, with epochs (and on a small dataset the learning rate) raised to suit its size."""
    values, fitted = _fitted(session, user, spec_form.from_form(form))
    return _designer(request, session, user, values, preset=form.get("preset", ""), fitted=fitted)


def _with_preset(values: dict[str, Any], key: str) -> dict[str, Any]:
    """A preset's spec over the defaults, keeping what the user chose; unknown keys change nothing."""
    preset = presets.find(key)
    if preset is None:
        return values
    kept = {k: values[k] for k in presets.KEEP if values.get(k) not in (None, "")}
    return {**spec_form.from_spec(preset.overrides()), **kept, "estimate_device": values.get("estimate_device")}


def _fitted(session: Session, user: User, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Form values fitted to the chosen dataset's size (sizing.fit_to_dataset), and what changed."""
    spec = _draft_spec(values)
    rows = _rows(session, user, spec) if spec else None
    if spec is None or not rows:
        return values, []
    fitted, changes = sizing.fit_to_dataset(spec, rows)
    if not changes:
        return values, []
    return spec_form.with_overrides(values, {"training": fitted.training.model_dump(mode="json")}), changes


@router.post("/runs/new/estimate")
def estimate_partial(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """The estimate panel's body for the form as it stands (htmx swaps it in on every change)."""
    devices = estimate_service.devices(workers.live_workers(request.app.state.resources.redis))
    device = form.get("estimate_device") or next(iter(devices))
    return render(request, "runs/_estimate_panel.html", _panel(session, user, dict(form), device, devices))


@router.post("/runs/new/yaml")
def export_yaml(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """The form's spec as a YAML download (validated first: errors show by their fields)."""
    try:
        spec = RunSpec.model_validate(spec_form.parse(form))
    except ValidationError as exc:
        return _designer(request, session, user, spec_form.from_form(form), spec_form.field_errors(exc),
                         status_code=422)
    filename = (spec.name or "run-spec").replace('"', "").replace("/", "-")
    return Response(spec.to_yaml(), media_type="text/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{filename}.yaml"'})


@router.post("/runs")
def create_from_form(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Validate the designer's fields as a RunSpec and queue the run; on errors show them by their fields."""
    try:
        return _create(request, session, user, RunSpec.model_validate(spec_form.parse(form)), _priority(form))
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    values = {**spec_form.from_form(form), "priority": form.get("priority", "")[:20]}
    return _designer(request, session, user, values, errors, status_code=status)


@router.post("/runs/yaml")
def create_from_yaml(request: Request, session: SessionDep, user: CurrentUser, settings: SettingsDep,
                     form: FormDep) -> Response:
    """Queue a run from a YAML spec (the format of presets and `lorastudio train`), read within bounds: one too
    large, or with anchors/aliases, tags or deep nesting, is refused by line and column before it is built."""
    text, limits = form.get("spec_yaml", ""), YamlLimits(max_bytes=settings.max_spec_yaml_bytes)
    try:
        return _create(request, session, user, RunSpec.from_yaml(text, limits))
    except YamlRefused as exc:
        errors, status = {"spec_yaml": f"The spec was not read: {exc.message}."}, STATUS[exc.kind]
        text = text if exc.kind != "too_large" else ""  # never sent back
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    errors.setdefault("spec_yaml", "The spec has errors; they are shown by their fields below.")
    return _designer(request, session, user, _values_of(text, limits), errors, spec_yaml=text, status_code=status)


def _values_of(text: str, limits: YamlLimits) -> dict[str, Any]:
    """Form values from the YAML if it is read (within the same bounds), so its errors show beside their fields."""
    try:
        data = safe_yaml.load(text, limits)
    except YamlRefused:
        data = None
    return spec_form.from_spec(data) if isinstance(data, dict) else spec_form.defaults()
