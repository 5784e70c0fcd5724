"""Sniffing an uploaded file's type from its first bytes, with the user's file name only as a hint."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import BinaryIO, Literal

from app.core.datasets.problems import DatasetProblem
from app.core.datasets.strict_json import DECODER, DuplicateKey

FileType = Literal["jsonl", "json", "csv", "parquet"]
FILE_TYPES: tuple[FileType, ...] = ("jsonl", "json", "csv", "parquet")

HEAD_BYTES = 64 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
WHITESPACE = b" \t\r\n"
# Magic numbers of formats people upload by mistake; naming them makes the error actionable.
OTHER_FORMATS: dict[bytes, str] = {
    b"PK\x03\x04": "a zip archive (or an Excel/Office file)",
    b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive",
    b"\x28\xb5\x2f\xfd": "a zstd archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-zip archive",
    b"ARROW1": "an Arrow IPC file",
    b"\x93NUMPY": "a NumPy array",
    b"SQLite format 3\x00": "an SQLite database",
    b"%PDF": "a PDF document",
}
PICKLE_EXTENSIONS = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz"}
ACCEPTED = "JSON Lines (.jsonl), a JSON array (.json), CSV (.csv) or Parquet (.parquet)"


def sniff_file_type(path: Path, filename: str) -> FileType:
    """The file's type; content wins over the extension wherever the two disagree detectably."""
    extension = PurePath(filename).suffix.lower()
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
        if not head:
            raise DatasetProblem("empty_file", "The file is empty; upload a file with at least one row.", line=None)
        if head.startswith(b"PAR1"):
            return "parquet"
        _reject_binary(head, extension)
        if extension == ".parquet":
            raise DatasetProblem("corrupt_parquet", "The file is named .parquet but does not start with PAR1.")
        first = _first_significant_byte(file, head.removeprefix(UTF8_BOM))
    return _text_type(first, head, extension)


def _reject_binary(head: bytes, extension: str) -> None:
    """Refuse pickles, archives and other binary content before any parser sees it."""
    if extension in PICKLE_EXTENSIONS or _looks_like_pickle(head):
        raise DatasetProblem(
            "binary_content", f"This looks like a pickle or other binary file and is never loaded; upload {ACCEPTED}."
        )
    for magic, name in OTHER_FORMATS.items():
        if head.startswith(magic):
            raise DatasetProblem("unsupported_file_type", f"The file is {name}; upload {ACCEPTED}.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetProblem("invalid_encoding", "The file is UTF-16 encoded; save it as UTF-8 and upload it again.")
    if b"\x00" in head:
        line = head[: head.index(b"\x00")].count(b"\n") + 1
        raise DatasetProblem(
            "binary_content", f"The file contains NUL bytes, so it is not text; upload {ACCEPTED}.", line=line
        )


def _looks_like_pickle(head: bytes) -> bool:
    """Pickle protocol 2+ starts with PROTO (0x80) and a version byte."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _first_significant_byte(file: BinaryIO, head: bytes) -> bytes:
    """The first non-whitespace byte, reading past the head if needed; empty_file if there is none."""
    chunk = head
    while chunk:
        stripped = chunk.lstrip(WHITESPACE)
        if stripped:
            return stripped[:1]
        chunk = file.read(HEAD_BYTES)
    raise DatasetProblem("empty_file", "The file contains only whitespace; upload a file with at least one row.")


def _text_type(first: bytes, head: bytes, extension: str) -> FileType:
    """Decide between jsonl, json and csv for a text file."""
    if first == b"[":
        return "json"
    if first == b"{":
        if extension != ".jsonl" and not _first_line_is_json(head):
            raise DatasetProblem(
                "not_an_array",
                "The file holds a single JSON object; expected a JSON array of objects ([{...}, {...}]) "
                "or JSON Lines (one object per line).",
                line=1,
            )
        return "jsonl"
    if extension in (".jsonl", ".json", ".ndjson"):
        return "jsonl"  # so the reader reports the invalid JSON with its line number
    if extension in (".csv", ".txt", ""):
        return "csv"
    raise DatasetProblem("unsupported_file_type", f"Files named {extension} are not accepted; upload {ACCEPTED}.")


def _first_line_is_json(head: bytes) -> bool:
    """Whether the first non-blank line parses on its own, as JSON Lines does."""
    text = head.removeprefix(UTF8_BOM).lstrip(WHITESPACE)
    line, newline, _ = text.partition(b"\n")
    if not newline and len(head) == HEAD_BYTES:
        return True  # the first line is longer than the head; let the line reader judge it
    try:
        DECODER.decode(line.decode("utf-8", "replace"))  # its hooks: no ValueError for a 5000-digit number
    except DuplicateKey:
        return True  # a line of its own all the same; the reader names the key
    except ValueError:
        return False
    return True
