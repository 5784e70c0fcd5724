"""The blob store: content-addressed, chunked, streamed back byte for byte."""

from __future__ import annotations

import hashlib
import os

import pytest

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


@pytest.mark.committed  # two real transactions on two connections: not the test's one rolled-back connection
def test_same_bytes_stored_by_two_transactions_at_once(resources) -> None:  # noqa: ANN001
    # Two runs with the same seed write identical checkpoint files at the same moment: the second transaction
    # must reuse the first one's blob once that commits, not fail on the unique sha256.
    import threading

    from app.core.db import session_scope

    data = os.urandom(4096)
    first = resources.session_factory()
    try:
        mine = blobs.put_stream(first, [data], "application/octet-stream")  # not committed yet
        result: dict = {}

        def store_again() -> None:
            try:
                with session_scope(resources.session_factory) as second:
                    result["id"] = blobs.put_stream(second, [data], "application/octet-stream").id
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                result["error"] = exc

        racer = threading.Thread(target=store_again)
        racer.start()
        racer.join(1.0)  # it waits on the first transaction (a row lock, or SQLite's write lock)
        first.commit()
        racer.join(30)
        assert "error" not in result, result.get("error")
        assert result["id"] == mine.id
    finally:
        first.close()


def returned_bytes(session) -> list[int]:  # noqa: ANN001
    """Sizes of the bytes values every statement the session runs hands back (what crossed the wire)."""
    from sqlalchemy import event

    sizes: list[int] = []

    def count(state):  # noqa: ANN001, ANN202
        frozen = state.invoke_statement().freeze()
        sizes.extend(len(value) for row in frozen.data for value in row if isinstance(value, bytes | memoryview))
        return frozen()

    event.listen(session, "do_orm_execute", count)
    return sizes


def test_read_range_reads_only_the_bytes_in_range(session) -> None:
    data = os.urandom(blobs.CHUNK_SIZE * 2 + 123)
    blob = blobs.put_stream(session, [data], "application/octet-stream")
    size, chunk = len(data), blobs.CHUNK_SIZE
    ranges = [(0, 0), (0, 10), (5, 1000), (chunk - 3, 7), (chunk - 1, 1), (chunk, 1), (chunk - 10, chunk + 20),
              (2 * chunk + 100, 23), (2 * chunk + 100, 500), (size - 1, 1), (size, 10), (size + 5, 10), (0, size)]
    sizes = returned_bytes(session)
    for start, length in ranges:
        sizes.clear()
        assert blobs.read_range(session, blob.id, start, length) == data[start : start + length], (start, length)
        assert sum(sizes) == len(data[start : start + length]), (start, length)  # the database sliced the chunks


def test_read_range_of_a_small_blob_and_bad_ranges(session) -> None:
    blob = blobs.put_stream(session, [b"hello world"], "text/plain")
    assert blobs.read_range(session, blob.id, 6, 100) == b"world"
    assert blobs.read_range(session, blob.id, 11, 1) == b""
    with pytest.raises(ValueError):
        blobs.read_range(session, blob.id, -1, 2)
