"""Inspecting an uploaded dataset end to end, and streaming it out in canonical form."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.core.datasets.canonical import as_object, canonical_row
from app.core.datasets.canonical_file import CanonicalWriter, encode_row
from app.core.datasets.file_types import FILE_TYPES, FileType, sniff_file_type
from app.core.datasets.formats import FORMATS, Format, check_same_format, first_format
from app.core.datasets.limits import DEFAULT_LIMITS, Limits
from app.core.datasets.problems import DatasetProblem
from app.core.datasets.readers import read_rows
from app.core.datasets.strict_json import check_row

PREVIEW_ROWS = 5
PREVIEW_CHARS = 500
# A cell starting with one of these is a formula to Excel/LibreOffice (CSV injection, OWASP). Rows keep them
# verbatim for training ("- item", "+1" are ordinary text); only the preview, which people copy into
# spreadsheets, gets the OWASP "'" prefix.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class InspectedDataset(BaseModel):
    """What an upload holds: its file type, format, size, columns and a short preview."""

    model_config = ConfigDict(frozen=True)

    file_type: FileType
    format: Format
    row_count: int
    columns: list[str]
    preview: list[dict[str, Any]]


def inspect_dataset(
    path: Path, filename: str, limits: Limits = DEFAULT_LIMITS, *, canonical_out: CanonicalWriter | None = None
) -> InspectedDataset:
    """Sniff, detect and validate every row of the file at `path`; `filename` only hints at the type."""
    file_type = sniff_file_type(path, filename)
    rows = _checked_rows(path, file_type, None, limits)
    _, first, format, canonical = next(rows)
    # The canonical rows are written in this same pass (an upload is read once); after a bad row what was written
    # is incomplete, and the caller throws it away with the DatasetProblem.
    write = canonical_out.write if canonical_out is not None else _ignore
    write(canonical)
    preview, count = [_shorten(first)], 1
    for _, row, _, canonical in rows:
        write(canonical)
        count += 1
        if len(preview) < PREVIEW_ROWS:
            preview.append(_shorten(row))
    return InspectedDataset(file_type=file_type, format=format, row_count=count, columns=list(first), preview=preview)


def iter_canonical(
    path: Path, file_type: FileType, format: Format, limits: Limits = DEFAULT_LIMITS
) -> Iterator[dict[str, Any]]:
    """Yield every row in canonical form, checking each again (the file may have changed since inspection)."""
    if file_type not in FILE_TYPES or format not in FORMATS:
        raise ValueError(f"unknown file type {file_type!r} or format {format!r}")
    for _, _, _, canonical in _checked_rows(path, file_type, format, limits):
        yield canonical


def write_canonical_jsonl(
    path: Path, file_type: FileType, format: Format, dest: Path, limits: Limits = DEFAULT_LIMITS
) -> int:
    """Stream the canonical rows to `dest` as JSON Lines and return how many were written."""
    # Written beside dest and renamed, so a bad row never leaves a half-written file that looks complete.
    partial = dest.with_name(dest.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as out:
            for row in iter_canonical(path, file_type, format, limits):
                out.write(encode_row(row))
                count += 1
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _checked_rows(
    path: Path, file_type: FileType, format: Format | None, limits: Limits
) -> Iterator[tuple[int, dict[str, Any], Format, dict[str, Any]]]:
    """Yield (line, row, format, canonical row), holding every row to the first row's format."""
    count = 0
    for line, value in read_rows(path, file_type, limits):
        check_row(value, line, limits.max_depth)
        row = as_object(value, line)
        if format is None:
            format = first_format(row, line, file_type)
        else:
            check_same_format(row, line, format)
        count += 1
        if count > limits.max_rows:
            raise DatasetProblem(
                "too_many_rows",
                f"The file has more than {limits.max_rows:,} rows; split it or sample it down.",
                line=line,
            )
        yield line, row, format, canonical_row(row, format, line)
    if count == 0:
        raise DatasetProblem("empty_file", "The file has no rows; upload a file with at least one row.")


def _ignore(row: dict[str, Any]) -> None:
    """Where canonical rows go when nobody keeps them."""


def _shorten(value: Any) -> Any:
    """A JSON-safe copy with long strings cut and formula-looking strings defused, for the preview."""
    if isinstance(value, str):
        value = "'" + value if value.startswith(FORMULA_START) else value
        return value if len(value) <= PREVIEW_CHARS else value[:PREVIEW_CHARS] + "…"
    if isinstance(value, dict):
        return {str(key): _shorten(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_shorten(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # Parquet's NaN/inf: JSON (and PostgreSQL's json) has no such numbers
    if value is None or isinstance(value, bool | int | float):
        return value
    return _shorten(str(value))  # Parquet dates, decimals and bytes
