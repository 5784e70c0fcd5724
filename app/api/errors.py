"""Every error leaves the API as {"error": {code, message, field, line}} with a 4xx status; no part of it repeats
more than a bounded slice of the input (a message, a field name, the list of errors)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.core.errors import HTTP_STATUS, StudioError

MAX_MESSAGE, MAX_FIELD, MAX_ERRORS = 500, 200, 20


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """At most `limit` characters of a message that may quote the input."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return clip(".".join(parts), MAX_FIELD) or "body"


async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
    """A service error, mapped to its status; a 401 names the scheme to answer with (RFC 9110)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else getattr(exc, "headers", None)
    body = {**exc.to_dict(), "message": clip(exc.message)}
    return JSONResponse({"error": body}, status_code=HTTP_STATUS[exc.kind], headers=headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic errors, with the first field named in the message (the first MAX_ERRORS of them listed)."""
    found = exc.errors()
    errors = [{"field": _field(e["loc"]), "message": clip(e["msg"])} for e in found[:MAX_ERRORS]]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    more = f" ({len(found) - 1} more problems)" if len(found) > MAX_ERRORS else ""
    message = f"{first['field']}: {first['message']}{more}"
    body = {"code": "invalid_request", "message": message, "field": first["field"], "line": None, "errors": errors}
    return JSONResponse({"error": body}, status_code=422)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (404 route, 405) in the same shape."""
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        return _unreadable_body(exc.__cause__)
    body = {"code": f"http_{exc.status_code}", "message": clip(str(exc.detail)), "field": None, "line": None}
    return JSONResponse({"error": body}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _unreadable_body(cause: ValueError) -> JSONResponse:
    """A JSON body that parses but cannot be read (FastAPI's 400): an integer of thousands of digits."""
    too_long = "integer string conversion" in str(cause)
    message = ("a number in the body has more digits than any setting allows (Python reads at most 4300)"
               if too_long else f"the body cannot be read as JSON: {clip(str(cause), 200)}")
    body = {"code": "invalid_json", "message": message, "field": "body", "line": None}
    return JSONResponse({"error": body}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the handlers."""
    app.add_exception_handler(StudioError, studio_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
