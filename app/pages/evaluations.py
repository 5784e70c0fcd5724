"""Evaluations: the list with the form that starts one, and the "did it help?" report."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.generation import catalog as generation_catalog
from app.core.models import User
from app.core.repositories import catalog
from app.core.repositories import evaluations as evaluations_repo
from app.core.services import deletion
from app.core.services import evaluations as evaluation_service
from app.deps import CurrentUser, RowId, SessionDep, SettingsDep
from app.pages.forms import FormDep, whole_number
from app.pages.templating import render

router = APIRouter()
DEFAULTS = {"max_examples": "50", "max_new_tokens": "64", "seed": "0", "scorer_exact": "on"}


def _list(request: Request, session: Session, user: User, values: dict[str, str] | None = None,
          error: StudioError | None = None) -> HTMLResponse:
    context = {"nav": "evaluations", "evaluations": evaluation_service.list_evaluations(session, user),
               "datasets": catalog.list_datasets(session, user),
               "models": generation_catalog.list_models(session, user), "scorers": evaluation_service.SCORERS,
               "values": values or DEFAULTS, "error": error}
    return render(request, "evaluations/list.html", context, status_code=STATUS[error.kind] if error else 200)


@router.get("/evaluations")
def evaluations_page(request: Request, session: SessionDep, user: CurrentUser) -> HTMLResponse:
    """The user's evaluations (an admin's: all) and the form that starts one."""
    return _list(request, session, user)


@router.post("/evaluations")
def start(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
          form: FormDep) -> Response:
    """Queue an evaluation and show its report; a refusal is shown by its field."""
    try:
        spec = _spec(form)
        evaluation = evaluation_service.create_evaluation(session, settings, user, spec)
    except StudioError as error:
        return _list(request, session, user, form, error)
    return RedirectResponse(f"/evaluations/{evaluation.id}", status_code=303)


def _spec(form: dict[str, str]) -> evaluation_service.EvaluationSpec:
    """The form as an EvaluationSpec; a number that is not one is refused by its field."""
    general = form.get("general_dataset_id", "").strip()
    return evaluation_service.EvaluationSpec(
        dataset_id=whole_number(form, "dataset_id"), model=form.get("model", ""),
        scorers=[s for s in evaluation_service.SCORERS if form.get(f"scorer_{s}")],
        general_dataset_id=whole_number(form, "general_dataset_id") if general else None,
        max_examples=whole_number(form, "max_examples"), max_new_tokens=whole_number(form, "max_new_tokens"),
        seed=whole_number(form, "seed"), rubric=form.get("rubric"))


@router.get("/evaluations/{evaluation_id}")
def report_page(request: Request, evaluation_id: RowId, session: SessionDep, user: CurrentUser,
                part: Literal["main", "general"] = "main", page: int = 1) -> HTMLResponse:
    """The report: base vs adapter with intervals, flips first, the examples (paged), the adapter's hash."""
    evaluation = evaluation_service.get_evaluation(session, evaluation_id, user)
    total = evaluations_repo.count_examples(session, evaluation.id, part)
    size = evaluation_service.PAGE_EXAMPLES
    pages = max(1, -(-total // size))
    page = min(max(page, 1), pages)
    examples = evaluations_repo.examples_page(session, evaluation.id, part, (page - 1) * size, size)
    context: dict[str, Any] = {"nav": "evaluations", "evaluation": evaluation, "part": part, "page": page,
                               "pages": pages, "examples": examples, "total": total,
                               "summary": evaluation.summary.get(part) or {},
                               "has_general": "general" in evaluation.summary,
                               "dataset_names": _names(session, user)}
    return render(request, "evaluations/report.html", context)


def _names(session: Session, user: User) -> dict[int, str]:
    return {d.id: d.name for d in catalog.list_datasets(session, user)}


@router.post("/evaluations/{evaluation_id}/cancel")
def cancel(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Cancel or ask to stop, then back to the report (which shows the outcome)."""
    evaluation = evaluation_service.get_evaluation(session, evaluation_id, user)
    try:
        evaluation_service.cancel_evaluation(session, evaluation)
    except StudioError as exc:
        if exc.code != "evaluation_finished":
            raise
        # It ended while the button was on screen: its page already tells how.
    return RedirectResponse(f"/evaluations/{evaluation_id}", status_code=303)


@router.post("/evaluations/{evaluation_id}/delete")
def delete(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Delete a finished evaluation and its examples, then back to the list (a queued or running one: 409 page)."""
    deletion.delete_evaluation(session, evaluation_service.get_evaluation(session, evaluation_id, user))
    return RedirectResponse("/evaluations", status_code=303)
