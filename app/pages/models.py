"""Base models: the registry and its register form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.repositories import catalog
from app.core.services import deletion
from app.core.services import models as model_service
from app.deps import CurrentUser, RowId, SessionDep
from app.pages.forms import FormDep
from app.pages.templating import render

router = APIRouter()


def _list(request: Request, session: Session, form: dict[str, str] | None = None,
          error: StudioError | None = None) -> HTMLResponse:
    context = {"nav": "models", "models": catalog.list_models(session), "values": form or {}, "error": error}
    return render(request, "models/list.html", context, status_code=STATUS[error.kind] if error else 200)


@router.get("/models")
def models_page(request: Request, session: SessionDep) -> HTMLResponse:
    """Registered base models and the register form."""
    return _list(request, session)


@router.post("/models")
def register(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Register a model by hub id or (admins) local folder; errors show beside the field they concern."""
    try:
        model_service.register_model(session, form.get("name", ""), form.get("ref", ""),
                                     form.get("gguf_file", "").strip() or None, user=user,
                                     trust_remote_code=form.get("trust_remote_code") == "on")
    except StudioError as error:
        return _list(request, session, form, error)
    return RedirectResponse("/models", status_code=303)


@router.post("/models/{model_id}/delete")
def delete(model_id: RowId, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Unregister a model no run uses (admins only), then back to the list."""
    deletion.delete_model(session, model_id, user=user)
    return RedirectResponse("/models", status_code=303)
