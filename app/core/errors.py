"""Errors a person can act on: a stable code, a message, and where it applies the field and the line."""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal["invalid", "not_found", "conflict", "unavailable", "too_large", "unauthenticated", "forbidden",
                   "insufficient_storage"]
HTTP_STATUS: dict[str, int] = {"invalid": 422, "not_found": 404, "conflict": 409, "unavailable": 503, "too_large": 413,
                               "unauthenticated": 401, "forbidden": 403, "insufficient_storage": 507}


class StudioError(Exception):
    """Raised by services; the web layer maps kind to an HTTP status."""

    def __init__(
        self,
        kind: ErrorKind,
        code: str,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.code, self.message, self.field, self.line = kind, code, message, field, line

    def to_dict(self) -> dict[str, Any]:
        """The JSON body under "error"."""
        return {"code": self.code, "message": self.message, "field": self.field, "line": self.line}


def not_found(what: str, ident: object) -> StudioError:
    """A missing (or not visible) object."""
    return StudioError("not_found", f"{what}_not_found", f"There is no {what} {ident}.")
