"""Detecting a dataset's format from the keys of its rows, and holding every row to the first row's format."""

from __future__ import annotations

from typing import Any, Literal

from app.core.datasets.file_types import FileType
from app.core.datasets.problems import DatasetProblem

Format = Literal["text", "alpaca", "messages", "sharegpt", "prompt_completion"]
FORMATS: tuple[Format, ...] = ("text", "alpaca", "messages", "sharegpt", "prompt_completion")
REQUIRED_KEYS: dict[Format, tuple[str, ...]] = {
    "text": ("text",),
    "alpaca": ("instruction", "output"),
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt_completion": ("prompt", "completion"),
}
ACCEPTED = (
    '"text"; "instruction" + "output" (Alpaca, optional "input", "system", "history"); '
    '"messages" (OpenAI chat); "conversations" (ShareGPT); "prompt" + "completion"'
)
CSV_ACCEPTED = '"text"; "instruction" + "output" (optional "input", "system"); "prompt" + "completion"'


def guess_format(row: dict[str, Any]) -> Format | None:
    """The format a row's keys point to; one key of a pair is enough, so the other is reported missing."""
    keys = row.keys()
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or "output" in keys:
        return "alpaca"
    if "prompt" in keys or "completion" in keys:
        return "prompt_completion"
    return "text" if "text" in keys else None


def first_format(row: dict[str, Any], line: int, file_type: FileType) -> Format:
    """The dataset's format, decided by its first row."""
    if "chosen" in row and "rejected" in row:
        # Preference pairs train with DPO, which the studio does not run yet; training on the prompt alone
        # (or on "chosen" only) would silently be a different experiment.
        raise DatasetProblem(
            "unsupported_format",
            f'Line {line} holds preference data ("chosen" / "rejected") for DPO, which '
            f"is not supported yet; for supervised fine-tuning upload rows with {ACCEPTED}.",
            line=line,
            field="chosen",
        )
    found = guess_format(row)
    if file_type == "csv":
        return _csv_format(found, list(row))
    if found is None:
        keys = ", ".join(f'"{key}"' for key in list(row)[:10]) or "none"
        raise DatasetProblem(
            "unknown_format",
            f"Line {line} has the keys {keys}, which match no known format; rows must have {ACCEPTED}.",
            line=line,
        )
    return found


def _csv_format(found: Format | None, header: list[str]) -> Format:
    """A CSV's format from its header; conversations do not fit in CSV cells."""
    missing = [key for key in REQUIRED_KEYS[found] if key not in header] if found else []
    if found and not missing and found not in ("messages", "sharegpt"):
        return found
    columns = ", ".join(f'"{name}"' for name in header[:10])
    hint = " Upload conversations as JSON Lines or a JSON array." if found in ("messages", "sharegpt") else ""
    raise DatasetProblem(
        "csv_missing_columns",
        f"The CSV header has the columns {columns}; it needs the columns {CSV_ACCEPTED}.{hint}",
        line=1,
        field=missing[0] if missing else None,
    )


def check_same_format(row: dict[str, Any], line: int, expected: Format) -> None:
    """Refuse a row whose keys point to a different format than the first row's."""
    found = guess_format(row)
    if found is not None and found != expected:
        raise DatasetProblem(
            "mixed_formats",
            f"Line {line} looks like {found} data, but the file started as {expected}; "
            "every row must use the same format.",
            line=line,
        )
