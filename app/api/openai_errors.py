"""Errors of the OpenAI-compatible routes in OpenAI's shape, {"error": {message, type, param, code}}, on /v1 only
(every other path keeps the studio's shape), and the /v1 body cap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import clip
from app.body_limit import counting, declared_over
from app.core.errors import HTTP_STATUS, StudioError

PREFIX = "/v1"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error"}


def error_body(error: OpenAIError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.status, "server_error" if error.status >= 500 else "invalid_request_error")
    return {"error": {"message": clip(error.message), "type": kind, "param": error.param, "code": error.code}}


def error_response(error: OpenAIError, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as OpenAI's API answers it."""
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


def _as_openai(exc: Exception) -> tuple[OpenAIError, dict[str, str] | None]:
    if isinstance(exc, OpenAIError):
        return exc, None
    if isinstance(exc, StudioError):
        status = 400 if exc.kind == "invalid" else HTTP_STATUS[exc.kind]
        headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else getattr(exc, "headers", None)
        return OpenAIError(status, exc.code, exc.message, exc.field), headers
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc), None
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, OpenAIError):  # the body cap, raised while FastAPI read the body
        return exc.__cause__, {"Connection": "close"}
    status = 400 if exc.status_code == 422 else exc.status_code
    return OpenAIError(status, f"http_{exc.status_code}", str(exc.detail)), getattr(exc, "headers", None)


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    """A 400 naming the first bad parameter (its dotted path within the body), with what each union branch said."""
    found = exc.errors() or [{"loc": (), "msg": "invalid request", "type": ""}]
    param = _param(found[0]["loc"])
    said = list(dict.fromkeys(str(e["msg"]) for e in found if _param(e["loc"]) == param))[:3]
    code = "missing_required_parameter" if found[0]["type"] == "missing" else "invalid_value"
    return OpenAIError(400, code, f"{param or 'body'}: {', or '.join(said)}", param)


UNION_BRANCHES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _param(loc: tuple[Any, ...]) -> str | None:
    """A pydantic error's location as OpenAI names parameters: without the union branches pydantic tried
    (stop.constrained-str, content.list[TextPart])."""
    parts = [str(x) for x in loc[1:] if not (isinstance(x, str) and (x in UNION_BRANCHES or "[" in x or "-" in x))]
    return clip(".".join(parts), 200) or None


Handler = Callable[[Request, Any], Awaitable[Response]]


def scoped(fallback: Handler | None) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if is_v1(request.url.path) or fallback is None:
            return error_response(*_as_openai(exc))
        return await fallback(request, exc)

    return handle


def is_v1(path: str) -> bool:
    """Whether a path is one of the OpenAI-compatible routes'."""
    return path == PREFIX or path.startswith(PREFIX + "/")


class V1BodyCap:
    """ASGI middleware: a /v1 request's body is refused (413) past the cap, counted as it arrives (app.body_limit);
    the error raised while FastAPI reads the body comes back as its HTTPException's cause (_as_openai)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_v1(scope["path"]):
            return await self.app(scope, receive, send)
        too_large = OpenAIError(413, "request_too_large", f"The request body is larger than {self.limit} bytes "
                                "(LORASTUDIO_OPENAI_MAX_BODY_BYTES).")
        if declared_over(scope, self.limit):
            return await error_response(too_large, {"Connection": "close"})(scope, receive, send)
        try:
            await self.app(scope, counting(receive, self.limit, lambda: too_large), send)
        except OpenAIError as error:
            await error_response(error, {"Connection": "close"})(scope, receive, send)
