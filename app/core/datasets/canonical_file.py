"""Canonical rows as JSON Lines beside a sparse index of their byte offsets, so a page of rows is two range reads."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from types import TracebackType
from typing import Any

# One index entry per this many rows: a page of 20 rows then reads at most 20 rows more than it shows, and the
# index costs 8 bytes per 20 rows (a 10-million-row file: 4 MB).
INDEX_STRIDE = 20
OFFSET = struct.Struct("<Q")  # little-endian uint64: the same bytes whichever machine wrote them


def encode_row(row: dict[str, Any]) -> bytes:
    """One canonical row as a JSON Lines line (JSON escapes newlines in strings, so b"\\n" only ends rows)."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


class CanonicalWriter:
    """Writes rows to folder/canonical.jsonl and, to folder/canonical.index, the offset of every INDEX_STRIDE-th
    row followed by the total size (so the rows of entry k end where entry k + 1 begins, the last ones included)."""

    def __init__(self, folder: Path) -> None:
        self.rows_path, self.index_path = folder / "canonical.jsonl", folder / "canonical.index"
        self._rows, self._index = self.rows_path.open("wb"), self.index_path.open("wb")
        self.count = self.size = 0

    def write(self, row: dict[str, Any]) -> None:
        """Append one canonical row."""
        if self.count % INDEX_STRIDE == 0:
            self._index.write(OFFSET.pack(self.size))
        line = encode_row(row)
        self._rows.write(line)
        self.count, self.size = self.count + 1, self.size + len(line)

    def close(self) -> None:
        """Write the closing offset and close both files."""
        try:
            if not self._index.closed:
                self._index.write(OFFSET.pack(self.size))
        finally:  # a full disk fails the write or the flush: the files are closed all the same
            with contextlib.ExitStack() as closing:
                closing.callback(self._rows.close)
                closing.callback(self._index.close)

    def __enter__(self) -> CanonicalWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def index_entries(first: int, stop: int) -> tuple[int, int]:
    """The byte range (start, length) of the index entries that bracket rows [first, stop), stop > first."""
    low, high = first // INDEX_STRIDE, -(-stop // INDEX_STRIDE)  # at or before first; at or after stop
    return low * OFFSET.size, (high - low + 1) * OFFSET.size


def rows_span(entries: bytes) -> tuple[int, int]:
    """The byte range (start, length) of the canonical rows from the first of these index entries to the last."""
    start, end = OFFSET.unpack_from(entries, 0)[0], OFFSET.unpack_from(entries, len(entries) - OFFSET.size)[0]
    return start, end - start


def parse_rows(data: bytes, first: int, stop: int) -> list[dict[str, Any]]:
    """Rows [first, stop) out of the bytes rows_span read for them."""
    skip = first % INDEX_STRIDE  # the span starts at the entry at or before first
    return [json.loads(line) for line in data.split(b"\n")[skip : skip + stop - first]]
