"""Count what a code path reads from the blob store: byte ranges allowed, whole blobs refused."""

from __future__ import annotations

import pytest

from app.core import blobs


def count_range_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the ranges read from now on (clear it between reads); reading a whole blob fails the test."""
    read: list[int] = []
    real_read_range = blobs.read_range

    def counted(*args: object) -> bytes:
        data = real_read_range(*args)
        read.append(len(data))
        return data

    def whole_blob(*args: object) -> None:
        raise AssertionError("a page must not read the whole blob")

    monkeypatch.setattr(blobs, "read_range", counted)
    monkeypatch.setattr(blobs, "iter_blob", whole_blob)
    monkeypatch.setattr(blobs, "export_to_file", whole_blob)
    return read
