"""The blob store: content-addressed, chunked, streamed back byte for byte."""

from __future__ import annotations

import hashlib
import os

from app.core import blobs


def test_round_trip_and_dedup(session, tmp_path) -> None:
    data = os.urandom(blobs.CHUNK_SIZE * 2 + 123)
    pieces = [data[i : i + 7000] for i in range(0, len(data), 7000)]
    blob = blobs.put_stream(session, pieces, "application/octet-stream")
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert b"".join(blobs.iter_blob(session, blob.id)) == data
    again = blobs.put_stream(session, [data], "application/octet-stream")
    assert again.id == blob.id  # same bytes, one blob
    path = blobs.export_to_file(session, blob.id, tmp_path / "out.bin")
    assert path.read_bytes() == data


def test_empty_blob(session) -> None:
    blob = blobs.put_stream(session, [], "text/plain")
    assert blob.size == 0 and b"".join(blobs.iter_blob(session, blob.id)) == b""
