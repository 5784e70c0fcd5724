"""Incremental reader of a top-level JSON array: one element at a time over a sliding text buffer."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from app.core.datasets.file_types import UTF8_BOM
from app.core.datasets.limits import Limits
from app.core.datasets.problems import DatasetProblem
from app.core.datasets.strict_json import DECODER, DuplicateKey, duplicate_key, too_deep

CHUNK_BYTES = 64 * 1024
# A decode error this close to the end of the buffer may only mean the element is not fully read yet.
TRUNCATION_MARGIN = 16
_WHITESPACE = re.compile(r"[ \t\r\n]*")


def read_json_array(file: BinaryIO, limits: Limits) -> Iterator[tuple[int, Any]]:
    """Yield (line where the element starts, element) for each element of a JSON array."""
    buffer = _Buffer(file, limits)
    if buffer.peek() != "[":
        raise _invalid(buffer.line, "expected a JSON array starting with [")
    buffer.advance(buffer.pos + 1)
    if buffer.peek() == "]":
        buffer.close_array()
        return
    while True:
        yield buffer.element()
        char = buffer.peek()
        if char == "]":
            buffer.close_array()
            return
        if char != ",":
            raise _invalid(buffer.line, "expected , or ] after an element" if char else "the array is never closed")
        buffer.advance(buffer.pos + 1)
        if buffer.peek() == "]":
            raise _invalid(buffer.line, "trailing comma before ]")


def _invalid(line: int, what: str) -> DatasetProblem:
    return DatasetProblem(
        "invalid_json", f"Line {line} is not valid JSON: {what}. The file must be a JSON array of objects.", line=line
    )


class _Buffer:
    """Decoded text not yet consumed, and the line number at the read position."""

    def __init__(self, file: BinaryIO, limits: Limits) -> None:
        self.file, self.limits = file, limits
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.pos, self.line = "", 0, 1
        self.newlines_read, self.started, self.eof = 0, False, False

    def fill(self, size: int) -> bool:
        """Read about `size` more bytes, dropping what was consumed; False at the end of the file."""
        if self.eof:
            return False
        raw = self.file.read(size)
        if not self.started:
            raw, self.started = raw.removeprefix(UTF8_BOM), True
        try:
            chunk = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as error:
            line = self.newlines_read + raw[: error.start].count(b"\n") + 1
            raise DatasetProblem(
                "invalid_encoding",
                f"Line {line} is not valid UTF-8; save the file as UTF-8 and upload it again.",
                line=line,
            ) from None
        self.newlines_read += raw.count(b"\n")
        self.eof = not raw
        self.text, self.pos = self.text[self.pos :] + chunk, 0
        return not self.eof

    def advance(self, to: int) -> None:
        """Move the read position, counting the lines passed."""
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str:
        """The next non-whitespace character, or "" at the end of the file."""
        while True:
            self.advance(_WHITESPACE.match(self.text, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill(CHUNK_BYTES):
                return ""

    def element(self) -> tuple[int, Any]:
        """Decode the element at the read position, reading more until it is complete."""
        start = self.line
        while True:
            try:
                value, end = DECODER.raw_decode(self.text, self.pos)
            except DuplicateKey as error:
                raise duplicate_key(error, start) from None
            except RecursionError:
                raise too_deep(start, self.limits.max_depth) from None
            except json.JSONDecodeError as error:
                if self.eof or not _maybe_truncated(error, len(self.text)):
                    line = self.line + self.text.count("\n", self.pos, error.pos)
                    raise _invalid(line, error.msg) from None
                self._grow(start)
                continue
            if end - self.pos > self.limits.max_row_bytes:
                raise self._too_large(start)
            self.advance(end)
            return start, value

    def _grow(self, start: int) -> None:
        """Read as much again as the partial element holds, so re-parsing stays linear overall."""
        pending = len(self.text) - self.pos
        if pending > self.limits.max_row_bytes:
            raise self._too_large(start)
        self.fill(max(CHUNK_BYTES, pending))

    def _too_large(self, start: int) -> DatasetProblem:
        return DatasetProblem(
            "line_too_long",
            f"The element starting on line {start} is larger than {self.limits.max_row_bytes // 2**20} MiB "
            "(or is never closed); each row must be smaller.",
            line=start,
        )

    def close_array(self) -> None:
        """Consume the closing ] and insist that nothing but whitespace follows."""
        self.advance(self.pos + 1)
        if self.peek():
            raise _invalid(self.line, "unexpected content after the closing ]")


def _maybe_truncated(error: json.JSONDecodeError, length: int) -> bool:
    """Whether the decode error could come from the buffer ending mid-element."""
    return error.msg.startswith("Unterminated string") or error.pos >= length - TRUNCATION_MARGIN
