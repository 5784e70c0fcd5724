"""Guards against files that would exhaust memory or time, generous enough never to bother real data."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import Settings


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one dataset file."""

    max_rows: int = 10_000_000
    # One JSONL line, CSV record or JSON-array element; a row this large is a mistake, not a sample.
    max_row_bytes: int = 16 * 1024 * 1024
    # Real rows nest a few levels (messages → tool calls → arguments); deeper is hostile or broken.
    max_depth: int = 64
    # What a file may expand to once read: Parquet compresses, so its decoded size, not the upload's, is bounded.
    max_total_bytes: int = 2 * 1024**3
    # Parquet columns (leaves); a dataset has a handful, thousands are a bomb's metadata.
    max_columns: int = 1024
    # Decoded bytes held at once while reading Parquet (one record batch).
    batch_bytes: int = 32 * 1024 * 1024


DEFAULT_LIMITS = Limits()


def limits_from(settings: Settings) -> Limits:
    """The limits a studio's settings ask for (LORASTUDIO_DATASET_MAX_ROWS, _MAX_ROW_BYTES, MAX_UPLOAD_BYTES)."""
    return Limits(max_rows=settings.dataset_max_rows, max_row_bytes=settings.dataset_max_row_bytes,
                  max_total_bytes=settings.max_upload_bytes)
