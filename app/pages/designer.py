"""The run designer: a form generated from RunSpec, or a pasted YAML spec; both create a queued run."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.repositories import catalog
from app.core.services import runs as run_service
from app.deps import SessionDep
from app.pages import spec_form
from app.pages.forms import FormDep
from app.pages.templating import render
from worker.trainer.spec import RunSpec

router = APIRouter()


def _designer(request: Request, session: Session, values: dict[str, Any],
              errors: dict[str, str] | None = None, spec_yaml: str = "",
              status_code: int = 200) -> HTMLResponse:
    context = {"nav": "new", "sections": spec_form.sections(), "values": values, "errors": errors or {},
               "datasets": catalog.list_datasets(session), "models": catalog.list_models(session),
               "spec_yaml": spec_yaml}
    return render(request, "runs/new.html", context, status_code=status_code)


def _create(session: Session, spec: RunSpec) -> Response:
    run = run_service.create_run(session, spec)
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.get("/runs/new")
def new_run(request: Request, session: SessionDep, clone: int | None = None) -> HTMLResponse:
    """The empty designer, or one pre-filled from the spec an earlier run stored."""
    values = spec_form.from_spec(run_service.get_run(session, clone).spec) if clone else spec_form.defaults()
    return _designer(request, session, values)


@router.post("/runs")
def create_from_form(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Validate the designer's fields as a RunSpec and queue the run; on errors show them by their fields."""
    try:
        return _create(session, RunSpec.model_validate(spec_form.parse(form)))
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    return _designer(request, session, spec_form.from_form(form), errors, status_code=status)


@router.post("/runs/yaml")
def create_from_yaml(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Queue a run from a YAML spec (the format of presets and `lorastudio train`)."""
    text = form.get("spec_yaml", "")
    try:
        return _create(session, RunSpec.from_yaml(text))
    except yaml.YAMLError as exc:
        errors, status = {"spec_yaml": f"This is not valid YAML: {exc}"}, 422
    except ValidationError as exc:
        errors, status = spec_form.field_errors(exc), 422
    except StudioError as exc:
        errors, status = {exc.field or "_form": exc.message}, STATUS[exc.kind]
    errors.setdefault("spec_yaml", "The spec has errors; they are shown by their fields below.")
    return _designer(request, session, _values_of(text), errors, spec_yaml=text, status_code=status)


def _values_of(text: str) -> dict[str, Any]:
    """Form values from the YAML as far as it parses, so its errors show beside the fields they name."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    return spec_form.from_spec(data) if isinstance(data, dict) else spec_form.defaults()
