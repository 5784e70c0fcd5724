"""Streaming readers that yield (line, row) from each file type, never holding the whole file in memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from app.core.datasets.file_types import UTF8_BOM, FileType
from app.core.datasets.json_array import read_json_array
from app.core.datasets.limits import Limits
from app.core.datasets.parquet import read_parquet
from app.core.datasets.problems import DatasetProblem
from app.core.datasets.strict_json import DECODER, DuplicateKey, duplicate_key, too_deep

Row = tuple[int, Any]


def read_rows(path: Path, file_type: FileType, limits: Limits) -> Iterator[Row]:
    """Yield (1-based line, row) pairs; for Parquet the "line" is the 1-based row number."""
    if file_type == "parquet":
        yield from read_parquet(path, limits)
        return
    with path.open("rb") as file:
        if file_type == "jsonl":
            yield from read_jsonl(file, limits)
        elif file_type == "json":
            yield from read_json_array(file, limits)
        else:
            yield from read_csv(file, limits)


def text_lines(file: BinaryIO, limits: Limits) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line with its ending), checking UTF-8 and the size of every line."""
    number = 0
    while raw := file.readline(limits.max_row_bytes + 1):
        number += 1
        if len(raw) > limits.max_row_bytes:
            raise DatasetProblem(
                "line_too_long",
                f"Line {number} is longer than {limits.max_row_bytes // 2**20} MiB; each row must be smaller.",
                line=number,
            )
        if number == 1:
            raw = raw.removeprefix(UTF8_BOM)  # Excel and Notepad write one; it is not part of the data
        yield number, _decode(raw, number)


def _decode(raw: bytes, number: int) -> str:
    """One line as UTF-8, or invalid_encoding naming the line and the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetProblem(
            "invalid_encoding",
            f"Line {number} is not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "save the file as UTF-8 and upload it again.",
            line=number,
        ) from None


def read_jsonl(file: BinaryIO, limits: Limits) -> Iterator[Row]:
    """One JSON value per line; blank lines are skipped."""
    for number, line in text_lines(file, limits):
        if not line.strip():
            continue
        try:
            value = DECODER.decode(line)
        except DuplicateKey as error:
            raise duplicate_key(error, number) from None
        except RecursionError:
            raise too_deep(number, limits.max_depth) from None
        except json.JSONDecodeError as error:
            raise DatasetProblem(
                "invalid_json",
                f"Line {number} is not valid JSON: {error.msg} at column {error.colno}. "
                "Each line must be one complete JSON object.",
                line=number,
            ) from None
        yield number, value


def read_csv(file: BinaryIO, limits: Limits) -> Iterator[Row]:
    """CSV with a header row; rows are dicts of strings, numbered by the line where they start."""
    # The default 128 KiB field cap is smaller than one long document; raise it to the row limit (process-wide).
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_row_bytes))
    lines = text_lines(file, limits)
    reader = csv.reader(line for _, line in lines)
    header = _csv_row(reader)
    if header is None:
        return
    start = reader.line_num + 1
    while (cells := _csv_row(reader)) is not None:
        if any(cells):
            yield start, _csv_record(header, cells, start)
        start = reader.line_num + 1


def _csv_row(reader: Any) -> list[str] | None:
    """The next record, or None at the end; csv errors become problems with the line."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as error:
        code = "binary_content" if "NUL" in str(error) else "invalid_csv"
        raise DatasetProblem(code, f"Line {reader.line_num} is not valid CSV: {error}.", line=reader.line_num) from None


def _csv_record(header: list[str], cells: list[str], line: int) -> dict[str, str]:
    """Pair the cells with the header, refusing rows with a different number of cells."""
    if len(cells) != len(header):
        raise DatasetProblem(
            "invalid_csv",
            f"Line {line} has {len(cells)} cells but the header has {len(header)}; "
            "quote cells that contain commas or line breaks.",
            line=line,
        )
    return dict(zip(header, cells, strict=True))
