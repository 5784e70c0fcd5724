"""Datasets: the list with its upload form, and one dataset's facts and preview."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.repositories import catalog
from app.core.services import datasets as dataset_service
from app.deps import DatasetDep, SessionDep
from app.pages.templating import render
from app.uploads import spooled_upload

router = APIRouter()


def _list(request: Request, session: Session, error: StudioError | None = None,
          name: str = "") -> HTMLResponse:
    context = {"nav": "datasets", "datasets": catalog.list_datasets(session), "error": error, "name": name}
    return render(request, "datasets/list.html", context, status_code=STATUS[error.kind] if error else 200)


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep) -> HTMLResponse:
    """Uploaded datasets and the upload form."""
    return _list(request, session)


@router.post("/datasets")
async def upload(request: Request, session: SessionDep) -> Response:
    """Validate and store an uploaded file; on a problem show its code, line and field."""
    try:
        async with spooled_upload(request) as (path, filename, name):
            dataset = dataset_service.create_dataset(session, path, filename, name)
    except StudioError as error:
        form = await request.form()  # already parsed: Starlette keeps it on the request
        name = form.get("name")
        return _list(request, session, error, name if isinstance(name, str) else "")
    return RedirectResponse(f"/datasets/{dataset.id}", status_code=303)


@router.get("/datasets/{dataset_id}")
def dataset_page(request: Request, dataset: DatasetDep) -> HTMLResponse:
    """A dataset's facts and its first rows."""
    return render(request, "datasets/detail.html", {"nav": "datasets", "dataset": dataset})
