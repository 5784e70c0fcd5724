"""Every error leaves the API as {"error": {code, message, field, line}} with a 4xx status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.core.errors import HTTP_STATUS, StudioError


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "body"


async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
    """A service error, mapped to its status; a 401 names the scheme to answer with (RFC 9110)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else None
    return JSONResponse({"error": exc.to_dict()}, status_code=HTTP_STATUS[exc.kind], headers=headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic errors, with the first field named in the message."""
    errors = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    message = f"{first['field']}: {first['message']}"
    body = {"code": "invalid_request", "message": message, "field": first["field"], "line": None, "errors": errors}
    return JSONResponse({"error": body}, status_code=422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (404 route, 405) in the same shape."""
    body = {"code": f"http_{exc.status_code}", "message": str(exc.detail), "field": None, "line": None}
    return JSONResponse({"error": body}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    """Register the handlers."""
    app.add_exception_handler(StudioError, studio_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
