"""The adapter registry's pages: the list with a form that registers a run's adapter as a version, and one
adapter's versions (lineage, playground and download links, exports) with its aliases and the form that moves
them."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.models import User
from app.core.services import exports as export_service
from app.core.services import registry
from app.deps import AdapterDep, CurrentUser, SessionDep
from app.pages.forms import FormDep, whole_number
from app.pages.templating import render

router = APIRouter()


def _list(request: Request, session: Session, user: User, values: dict[str, str],
          error: StudioError | None = None) -> HTMLResponse:
    adapters = [(a, registry.versions(session, a), registry.aliases(session, a))
                for a in registry.list_adapters(session, user)]
    return render(request, "adapters/list.html", {"nav": "adapters", "adapters": adapters, "values": values,
                                                  "error": error}, status_code=STATUS[error.kind] if error else 200)


@router.get("/adapters")
def adapters_page(request: Request, session: SessionDep, user: CurrentUser, run: str = "", step: str = "",
                  ) -> HTMLResponse:
    """The registered adapters, and the form that registers a run's adapter (prefilled from ?run=&step=)."""
    return _list(request, session, user, {"run_id": run[:12], "step": step[:12]})


@router.post("/adapters")
def register(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Register the form's run (or kept step) as the next version of the named adapter, then show it."""
    try:
        request_ = registry.Registration(name=form.get("name", "").strip(), run_id=whole_number(form, "run_id"),
                                         step=whole_number(form, "step") if form.get("step", "").strip() else None,
                                         description=form.get("description", ""))
        version = registry.register(session, user, request_)
    except StudioError as error:
        return _list(request, session, user, form, error)
    return RedirectResponse(f"/adapters/{request_.name}#v{version.version}", status_code=303)


@router.get("/adapters/{name}")
def adapter_page(request: Request, adapter: AdapterDep, session: SessionDep) -> HTMLResponse:
    """An adapter's versions, newest first, with lineage, and its aliases."""
    return _detail(request, session, adapter)


def _detail(request: Request, session: Session, adapter: Any, error: StudioError | None = None) -> HTMLResponse:
    versions = registry.versions(session, adapter)
    aliases = registry.aliases(session, adapter)
    playground = {v.version: "/playground?" + urlencode([("model", v.base_name),
                                                          ("model", f"{adapter.name}:v{v.version}")])
                  for v in versions}
    context = {"nav": "adapters", "adapter": adapter, "versions": versions, "aliases": aliases,
               "checks": {v.version: registry.compatibility(session, v) for v in versions},
               "serving": {v.version: registry.readiness(session, adapter, v) for v in versions},
               "by_version": {v: [a for a, n in aliases.items() if n == v] for v in aliases.values()},
               "playground": playground, "error": error, **_exports(session, versions)}
    return render(request, "adapters/detail.html", context, status_code=STATUS[error.kind] if error else 200)


def _exports(session: Session, versions: list) -> dict[str, Any]:
    """Each version's exports (newest first), their files and verification agreement, and the formats offered."""
    exports = export_service.exports_of(session, [v.id for v in versions])
    ids = [e.id for found in exports.values() for e in found]
    return {"exports": exports, "export_files": export_service.files_of(session, ids),
            "agreement": {e.id: export_service.agreement(e.report) for found in exports.values() for e in found},
            "formats": export_service.FORMATS}


@router.post("/adapters/{name}/versions/{version}/exports")
def request_export(request: Request, adapter: AdapterDep, version: Annotated[int, Path(ge=1, le=10**9)],
                   session: SessionDep, user: CurrentUser, form: FormDep) -> Response:
    """Export a version to the form's format (or show the one already queued, running or done)."""
    try:
        found = registry.version_of(session, adapter, version)
        export_service.request_export(session, user, adapter, found, form.get("format", "").strip())
    except StudioError as error:
        return _detail(request, session, adapter, error)
    return RedirectResponse(f"/adapters/{adapter.name}#exports-v{version}", status_code=303)


@router.post("/adapters/{name}/aliases")
def move_alias(request: Request, adapter: AdapterDep, session: SessionDep, form: FormDep) -> Response:
    """Make or move an alias (promote, roll back), then back to the adapter."""
    try:
        registry.set_alias(session, adapter, form.get("alias", "").strip(), whole_number(form, "version"))
    except StudioError as error:
        return _detail(request, session, adapter, error)
    return RedirectResponse(f"/adapters/{adapter.name}", status_code=303)


@router.post("/adapters/{name}/versions/{version}/delete")
def delete_version(request: Request, adapter: AdapterDep, version: Annotated[int, Path(ge=1, le=10**9)],
                   session: SessionDep) -> Response:
    """Delete a version (refused, on the page, while an alias points to it)."""
    try:
        registry.delete_version(session, adapter, version)
    except StudioError as error:
        return _detail(request, session, adapter, error)
    return RedirectResponse(f"/adapters/{adapter.name}", status_code=303)
