"""Datasets: the list with its upload form, and one dataset's facts, paged rows and doctor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis, User
from app.core.repositories import catalog
from app.core.services import analyses as analysis_service
from app.core.services import deletion
from app.deps import CurrentUser, DatasetDep, OptionalRowIdQuery, RowId, SessionDep
from app.pages.forms import FormDep
from app.pages.templating import render
from app.uploads import store_upload
from worker.planning.spec import DEFAULT_SEQ_LENGTH, MAX_SYSTEM_PROMPT

router = APIRouter()


def _list(request: Request, session: Session, user: User, error: StudioError | None = None,
          name: str = "") -> HTMLResponse:
    context = {"nav": "datasets", "datasets": catalog.list_datasets(session, user), "error": error, "name": name}
    return render(request, "datasets/list.html", context, status_code=STATUS[error.kind] if error else 200)


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, user: CurrentUser) -> HTMLResponse:
    """The user's uploaded datasets (an admin's: all) and the upload form."""
    return _list(request, session, user)


@router.post("/datasets")
async def upload(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Validate and store an uploaded file; on a problem show its code, line and field."""
    try:
        dataset = await store_upload(request, session, user)
    except StudioError as error:
        form = await request.form()  # already parsed: Starlette keeps it on the request
        name = form.get("name")
        return _list(request, session, user, error, name if isinstance(name, str) else "")
    return RedirectResponse(f"/datasets/{dataset.id}", status_code=303)


@router.get("/datasets/{dataset_id}")
def dataset_page(request: Request, dataset: DatasetDep, session: SessionDep, page: int = 1,
                 analysis: OptionalRowIdQuery = None) -> HTMLResponse:
    """A dataset's facts, a page of its rows, and its doctor (the chosen or latest analysis)."""
    chosen = (analysis_service.get_analysis(session, dataset.id, analysis) if analysis
              else analysis_service.latest_analysis(session, dataset.id))
    return _detail(request, session, dataset, page, chosen)


@router.post("/datasets/{dataset_id}/delete")
def delete(dataset: DatasetDep, session: SessionDep) -> RedirectResponse:
    """Delete a dataset no run uses, then back to the list (one in use: a 409 page naming the runs)."""
    deletion.delete_dataset(session, dataset)
    return RedirectResponse("/datasets", status_code=303)


@router.post("/datasets/{dataset_id}/analyze")
def analyze(request: Request, dataset: DatasetDep, session: SessionDep, form: FormDep) -> Response:
    """Request an analysis (reused when one exists) and show it; errors appear by their field."""
    try:
        length = _length(form.get("max_seq_length", ""))
        chosen = analysis_service.request_analysis_by_name(session, dataset, form.get("base_model", ""), length,
                                                           form.get("system_prompt"))
    except StudioError as error:
        return _detail(request, session, dataset, 1, None, form, error)
    return RedirectResponse(f"/datasets/{dataset.id}?analysis={chosen.id}#doctor", status_code=303)


@router.get("/datasets/{dataset_id}/analysis/{analysis_id}")
def analysis_partial(request: Request, dataset: DatasetDep, session: SessionDep, analysis_id: RowId) -> HTMLResponse:
    """The doctor's section alone: polled by htmx while the analysis is queued or running."""
    chosen = analysis_service.get_analysis(session, dataset.id, analysis_id)
    return render(request, "datasets/_analysis.html", {"dataset": dataset, **_analysis_context(session, chosen)})


def _detail(request: Request, session: Session, dataset: Dataset, page: int, chosen: DatasetAnalysis | None,
            form: dict[str, str] | None = None, error: StudioError | None = None) -> HTMLResponse:
    context = {"nav": "datasets", "dataset": dataset, "models": catalog.list_models(session), "error": error,
               "max_system_prompt": MAX_SYSTEM_PROMPT,
               "rows": analysis_service.rows_page(session, dataset, page), **_analysis_context(session, chosen)}
    context["values"] = form or {"base_model": context["model_name"] or "",
                                 "max_seq_length": str(chosen.max_seq_length if chosen else DEFAULT_SEQ_LENGTH),
                                 "system_prompt": (chosen.system_prompt if chosen else None) or ""}
    return render(request, "datasets/detail.html", context, status_code=STATUS[error.kind] if error else 200)


def _analysis_context(session: Session, chosen: DatasetAnalysis | None) -> dict[str, Any]:
    model = session.get(BaseModelEntry, chosen.base_model_id) if chosen else None
    result = chosen.result if chosen and chosen.status == "succeeded" else None
    return {"analysis": chosen, "model_name": model.name if model else None,
            "chart": length_chart(result) if result else None}


def _length(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise StudioError("invalid", "invalid_max_seq_length", "Give the max sequence length as a whole number "
                          "of tokens.", field="max_seq_length") from None


def length_chart(result: dict[str, Any], width: int = 720, height: int = 240) -> dict[str, Any]:
    """Geometry of the token-length histogram as an SVG bar chart, with the max length marked."""
    left, right, top, bottom = 56, 16, 24, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    counts, edges, limit = result["lengths"]["counts"], result["lengths"]["edges"], result["max_seq_length"]
    span, tallest = edges[-1] or 1, max(counts, default=0) or 1
    bar_w = plot_w / max(len(counts), 1)
    bars = [{"x": left + i * bar_w, "w": max(bar_w - 1, 1), "h": count / tallest * plot_h,
             "y": top + plot_h - count / tallest * plot_h, "count": count, "start": edges[i], "end": edges[i + 1],
             "over": edges[i] >= limit} for i, count in enumerate(counts)]
    step = max(1, -(-len(counts) // 6))  # about six labelled ticks on the x axis
    x_ticks = [{"x": left + i * bar_w, "label": edges[i]} for i in range(0, len(edges), step)]
    y_ticks = [{"y": top + plot_h - v / tallest * plot_h, "label": v} for v in sorted({0, tallest // 2, tallest})]
    return {"width": width, "height": height, "left": left, "top": top, "plot_w": plot_w, "plot_h": plot_h,
            "bars": bars, "x_ticks": x_ticks, "y_ticks": y_ticks, "limit": limit,
            "limit_x": left + min(limit / span, 1) * plot_w}
