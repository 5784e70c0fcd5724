"""The run designer: a form generated from RunSpec (or a pasted YAML spec) with presets, a live estimate of
memory and time, and YAML export; submitting it creates a queued run."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core import workers
from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.models import User
from app.core.repositories import catalog
from app.core.services import estimates as estimate_service
from app.core.services import runs as run_service
from app.deps import CurrentUser, OptionalRowIdQuery, SessionDep
from app.pages import spec_form
from app.pages.forms import FormDep
from app.pages.templating import render
from worker.planning import presets
from worker.planning.spec import RunSpec

router = APIRouter()


def _designer(request: Request, session: Session, user: User, values: dict[str, Any],
              errors: dict[str, str] | None = None, spec_yaml: str = "",
              status_code: int = 200, preset: str = "") -> HTMLResponse:
    devices = estimate_service.devices(workers.live_workers(request.app.state.resources.redis))
    device = values.get("estimate_device") or next(iter(devices))
    context = {"nav": "new", "sections": spec_form.sections(), "values": values, "errors": errors or {},
               "datasets": catalog.list_datasets(session, user), "models": catalog.list_models(session),
               "spec_yaml": spec_yaml, "presets": presets.presets().values(), "preset": preset,
               "devices": devices, "device": device, "estimate": _estimate(session, user, values, device, devices)}
    return render(request, "runs/new.html", context, status_code=status_code)


def _estimate(session: Session, user: User, values: dict[str, Any], device: str, devices: dict) -> Any:
    """The estimate of the spec the form values describe; None while they do not validate."""
    # Blank and unchecked fields are left out, so their defaults apply while the form is being filled in.
    present = {k: v for k, v in values.items() if v is not None and v is not False and v != ""}
    form = {k: ("on" if v is True else str(v)) for k, v in present.items()}
    data = spec_form.parse(form)
    if not (data.get("data") or {}).get("dataset_id"):
        data.setdefault("data", {})["path"] = "unchosen"  # size the rest before a dataset is picked
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError:
        return None
    profile = devices.get(device) or estimate_service.pick_device(device, [])
    return estimate_service.estimate_run(session, spec, profile, user=user)


def _create(request: Request, session: Session, user: User, spec: RunSpec) -> Response:
    # The live workers, so a setting none of them can run is refused here as it is by the API.
    live = workers.live_workers(request.app.state.resources.redis)
    run = run_service.create_run(session, spec, live, user=user)
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.get("/runs/new")
def new_run(request: Request, session: SessionDep, user: CurrentUser, clone: OptionalRowIdQuery = None,
            preset: str = "") -> HTMLResponse:
    """The empty designer, one pre-filled from an earlier run's spec (the user's own), or one set up by a preset."""
    values = (spec_form.from_spec(run_service.get_run(session, clone, user=user).spec) if clone
              else spec_form.defaults())
    return _designer(request, session, user, _with_preset(values, preset), preset=preset)


@router.post("/runs/new/preset")
def apply_preset(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """The designer as posted, with the chosen preset's settings (its name, model and data stay)."""
    preset = form.get("preset", "")
    return _designer(request, session, user, _with_preset(spec_form.from_form(form), preset), preset=preset)


def _with_preset(values: dict[str, Any], key: str) -> dict[str, Any]:
    """A preset's spec over the defaults, keeping what the user chose; unknown keys change nothing."""
    preset = presets.find(key)
    if preset is None:
        return values
    kept = {k: values[k] for k in presets.KEEP if values.get(k) not in (None, "")}
    return {**spec_form.from_spec(preset.overrides()), **kept, "estimate_device": values.get("estimate_device")}


@router.post("/runs/new/estimate")
def estimate_partial(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """The estimate panel's body for the form as it stands (htmx swaps it in on every change)."""
    devices = estimate_service.devices(workers.live_workers(request.app.state.resources.redis))
    device = form.get("estimate_device") or next(iter(devices))
    return render(request, "runs/_estimate.html", {"estimate": _estimate(session, user, dict(form), device, devices)})


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
        return _create(request, session, user, RunSpec.model_validate(spec_form.parse(form)))
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    return _designer(request, session, user, spec_form.from_form(form), errors, status_code=status)


@router.post("/runs/yaml")
def create_from_yaml(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Queue a run from a YAML spec (the format of presets and `lorastudio train`)."""
    text = form.get("spec_yaml", "")
    try:
        return _create(request, session, user, RunSpec.from_yaml(text))
    except yaml.YAMLError as exc:
        errors, status = {"spec_yaml": f"This is not valid YAML: {exc}"}, 422
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    errors.setdefault("spec_yaml", "The spec has errors; they are shown by their fields below.")
    return _designer(request, session, user, _values_of(text), errors, spec_yaml=text, status_code=status)


def _values_of(text: str) -> dict[str, Any]:
    """Form values from the YAML as far as it parses, so its errors show beside the fields they name."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    return spec_form.from_spec(data) if isinstance(data, dict) else spec_form.defaults()
