"""Guards against files that would exhaust memory or time, generous enough never to bother real data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one dataset file."""

    max_rows: int = 10_000_000
    # One JSONL line, CSV record or JSON-array element; a row this large is a mistake, not a sample.
    max_row_bytes: int = 16 * 1024 * 1024
    # Real rows nest a few levels (messages → tool calls → arguments); deeper is hostile or broken.
    max_depth: int = 64


DEFAULT_LIMITS = Limits()
