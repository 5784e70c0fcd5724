"""Checks shared by the upload tests: a refusal names the problem, and a refused upload stores nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.models import Blob, BlobChunk, Dataset


def stored_counts(session: Session) -> tuple[int, ...]:
    """Rows of datasets, blobs and blob chunks, read fresh (the app commits on its own connection)."""
    session.rollback()
    return tuple(session.scalar(select(func.count()).select_from(m)) for m in (Dataset, Blob, BlobChunk))


def assert_refused(response, code: str | None, line: int | None = None, field: str | None = None) -> dict:  # noqa: ANN001
    """A 4xx whose error has a code and a message, and the expected code, line and field where given."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert error["code"] and error["message"], error
    if code:
        assert error["code"] == code, error
    if line:
        assert error["line"] == line, error
    if field:
        assert error["field"] == field, error
    return error
