"""HTML error pages for page routes; paths under /api are handed to the JSON handlers unchanged. A page's message
is clipped like the API's: an error never sends back more than a bounded slice of the input."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from app.api import errors as api_errors
from app.core.errors import HTTP_STATUS, StudioError
from app.pages.templating import render

TITLES = {403: "Refused", 404: "Not found", 405: "Not allowed", 409: "Conflict", 413: "Too large",
          422: "Invalid request"}


def _is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def error_page(request: Request, status: int, message: str, code: str | None = None) -> Response:
    """The friendly error page: what happened and a way back."""
    context = {"status": status, "title": TITLES.get(status, "Something went wrong"),
               "message": api_errors.clip(message), "code": code}
    return render(request, "error.html", context, status_code=status)


def to_login(request: Request) -> Response:
    """Send a person who is not signed in to the login page, and back here afterwards (GET pages only)."""
    query = urlencode({"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")})
    target = "/login" + (f"?{query}" if request.method == "GET" else "")
    if request.headers.get("HX-Request"):
        # htmx would swap the login page into a table cell; this header makes it load the page instead.
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def studio_error(request: Request, exc: StudioError) -> Response:
    """A service error (a missing run, dataset…) as a page; not signed in: off to the login page."""
    if _is_api(request):
        return await api_errors.studio_error(request, exc)
    if exc.kind == "unauthenticated":
        return to_login(request)
    return error_page(request, HTTP_STATUS[exc.kind], exc.message, exc.code)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A malformed path or query (/runs/abc) as a page."""
    if _is_api(request):
        return await api_errors.validation_error(request, exc)
    # A path that does not parse names nothing that exists: for a person that is a 404.
    return error_page(request, 404, "This address does not name anything in the studio.")


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors (unknown path, wrong method) as a page."""
    if _is_api(request):
        return await api_errors.http_error(request, exc)
    message = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
    return error_page(request, exc.status_code, message)


def install(app: FastAPI) -> None:
    """Replace the JSON handlers with ones that pick HTML or JSON by path."""
    app.add_exception_handler(StudioError, studio_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
