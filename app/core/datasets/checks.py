"""Typed access to row values: each check names the field and line when the value is missing or wrong."""

from __future__ import annotations

from typing import Any

from app.core.datasets.problems import DatasetProblem

JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    return next((name for kind, name in JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def wrong_type(value: Any, expected: str, field: str, line: int) -> DatasetProblem:
    """A wrong_type problem saying what was expected and what was found."""
    return DatasetProblem(
        "wrong_type", f"Line {line}: {field} must be {expected}, but it is {type_name(value)}.", line=line, field=field
    )


def require(row: dict[str, Any], key: str, field: str, line: int) -> Any:
    """The value under `key`, or missing_field."""
    if key not in row:
        raise DatasetProblem(
            "missing_field", f"Line {line}: {field} is missing; add it to this row.", line=line, field=field
        )
    return row[key]


def text(value: Any, field: str, line: int, *, required: bool) -> str:
    """A string; when `required`, one with some non-whitespace text (else empty_field)."""
    if not isinstance(value, str):
        raise wrong_type(value, "a string", field, line)
    if required and not value.strip():
        raise DatasetProblem(
            "empty_field", f"Line {line}: {field} is empty; it must contain text to train on.", line=line, field=field
        )
    return value


def optional_text(row: dict[str, Any], key: str, line: int) -> str:
    """A string that may be absent or null (both read as "")."""
    value = row.get(key)
    return "" if value is None else text(value, key, line, required=False)


def array(value: Any, field: str, line: int) -> list[Any]:
    """A list, or wrong_type."""
    if not isinstance(value, list):
        raise wrong_type(value, "an array", field, line)
    return value


def mapping(value: Any, field: str, line: int) -> dict[str, Any]:
    """A dict (JSON object), or wrong_type."""
    if not isinstance(value, dict):
        raise wrong_type(value, "an object", field, line)
    return value
