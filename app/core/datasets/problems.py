"""DatasetProblem: what is wrong with an uploaded dataset, and where (line, field)."""

from __future__ import annotations

from app.core.errors import StudioError


class DatasetProblem(StudioError):
    """A dataset the studio cannot use; `code` is stable, `message` says what to fix."""

    def __init__(self, code: str, message: str, *, line: int | None = None, field: str | None = None) -> None:
        # A StudioError of kind "invalid", so the web layer answers 422 without knowing about datasets.
        super().__init__("invalid", code, message, field=field, line=line)

    def to_dict(self) -> dict[str, str | int | None]:
        """The JSON form: code, message, line and field."""
        return {"code": self.code, "message": self.message, "line": self.line, "field": self.field}

    def __repr__(self) -> str:
        return f"DatasetProblem({self.code!r}, line={self.line}, field={self.field!r}: {self.message})"
