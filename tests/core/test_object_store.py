"""Large blobs in an S3-compatible object store (app/core/object_store.py), over HTTP against moto's S3 server: the
same blob interface, the bytes in the bucket, only the metadata in the database."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import event, func, select

from app.core import blob_objects, blob_staging, blobs, object_store
from app.core.config import Settings
from app.core.db import session_scope
from app.core.models import Blob, BlobChunk
from app.core.models.blob import IN_DATABASE, IN_OBJECT_STORE
from app.core.object_store import BlobUnavailable, ObjectStore
from app.core.resources import Resources
from tests.support.database import rolled_back
from tests.support.s3_server import s3_server

MIN_BYTES = 256 * 1024  # the threshold, low so that a few MiB are a large blob
PART = 5 * 1024**2  # S3's smallest multipart part: a few MiB make several parts
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3_settings(settings: Settings) -> Iterator[Settings]:
    """The test session's settings with the object store on: moto's server, a bucket of its own, a low threshold."""
    with s3_server() as endpoint:
        on = settings.model_copy(update={
            "blob_store": "s3", "s3_endpoint_url": endpoint, "s3_bucket": f"studio-{uuid.uuid4().hex[:8]}",
            "s3_prefix": "studio-a/", "s3_access_key_id": "test", "s3_secret_access_key": SecretStr("test"),
            "blob_s3_min_bytes": MIN_BYTES})
        ObjectStore.from_settings(on).client.create_bucket(Bucket=on.s3_bucket)
        yield on


@pytest.fixture(scope="module")
def s3_resources(s3_settings: Settings) -> Iterator[Resources]:
    """A process whose settings name the bucket (its own engine on the test session's database)."""
    res = Resources(s3_settings)
    yield res
    res.engine.dispose()


@pytest.fixture(autouse=True)
def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(object_store, "PART_SIZE", PART)


@pytest.fixture
def s3_session(s3_resources: Resources) -> Iterator:
    """A session of that process, in a transaction rolled back after the test (the bucket keeps what it got)."""
    with rolled_back(s3_resources) as factory:
        session = factory()
        try:
            yield session
        finally:
            session.close()


@pytest.fixture
def store(s3_resources: Resources) -> ObjectStore:
    return s3_resources.object_store


def _keys(store: ObjectStore) -> set[str]:
    answer = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return {item["Key"] for item in answer.get("Contents", [])}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_blob_goes_to_the_bucket_and_comes_back(s3_session, store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(2 * PART + 12345)  # three parts
    pieces = [data[i : i + 70_000] for i in range(0, len(data), 70_000)]
    blob = blobs.put_stream(s3_session, pieces, "application/octet-stream")
    assert (blob.sha256, blob.size, blob.location) == (_sha(data), len(data), IN_OBJECT_STORE)
    assert blob.object_key.startswith("studio-a/blobs/")
    assert s3_session.scalar(select(func.count()).where(BlobChunk.blob_id == blob.id)) == 0  # metadata only
    assert store.client.head_object(Bucket=store.bucket, Key=blob.object_key)["ContentLength"] == len(data)
    assert b"".join(blobs.iter_blob(s3_session, blob.id)) == data
    assert blobs.export_to_file(s3_session, blob.id, tmp_path / "out" / "x.bin").read_bytes() == data


def test_identical_bytes_keep_one_blob_and_one_object(s3_session, store: ObjectStore, tmp_path: Path) -> None:
    before = _keys(store)
    data = os.urandom(MIN_BYTES + 1)
    first = blobs.put_stream(s3_session, [data], "x")
    again = blobs.put_stream(s3_session, [data[:100], data[100:]], "x")  # went up, then dropped for `first`
    path = tmp_path / "same.bin"
    path.write_bytes(data)
    from_file = blobs.put_file(s3_session, path, "x")  # found by its hash first: never sent
    assert first.id == again.id == from_file.id
    s3_session.commit()  # the duplicate's object goes once the unit of work commits
    assert _keys(store) - before == {first.object_key}


def test_read_range_is_one_ranged_get(s3_session, store: ObjectStore) -> None:
    data = os.urandom(PART + 1000)
    size = len(data)
    blob = blobs.put_stream(s3_session, [data], "x")
    sent: list[str] = []

    def record(request, **_kwargs) -> None:  # noqa: ANN001
        sent.append(request.headers["Range"].decode())

    store.client.meta.events.register("before-send.s3.GetObject", record)
    try:
        for start, length in [(0, 10), (blobs.CHUNK_SIZE - 3, 7), (PART - 10, 1000), (PART - 1, 2), (size - 1, 1),
                              (size - 5, 100), (0, size)]:
            sent.clear()
            assert blobs.read_range(s3_session, blob.id, start, length) == data[start : start + length]
            assert sent == [f"bytes={start}-{min(start + length, size) - 1}"], (start, length)
        for start, length in [(0, 0), (size, 10), (size + 5, 1)]:
            sent.clear()
            assert blobs.read_range(s3_session, blob.id, start, length) == b""
            assert sent == []  # nothing to read: no request
        with pytest.raises(ValueError):
            blobs.read_range(s3_session, blob.id, -1, 2)
    finally:
        store.client.meta.events.unregister("before-send.s3.GetObject", record)


def test_small_blobs_stay_in_the_database(s3_session, tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_bytes(b"a small file")
    stored = [blobs.put_stream(s3_session, [b"s" * (MIN_BYTES - 1)], "text/plain"),
              blobs.put_file(s3_session, path, "text/plain")]
    assert [(blob.location, blob.object_key) for blob in stored] == [(IN_DATABASE, None)] * 2
    assert blobs.read_range(s3_session, stored[1].id, 8, 100) == b"file"


def test_with_the_store_off_new_blobs_stay_in_the_database_and_old_ones_readable(s3_session, s3_settings: Settings,
                                                                                   store: ObjectStore) -> None:
    data = os.urandom(MIN_BYTES)
    old = blobs.put_stream(s3_session, [data], "x")  # while blob_store was 's3'
    off = ObjectStore.from_settings(s3_settings.model_copy(update={"blob_store": "database"}))
    assert off.min_bytes is None and ObjectStore.from_settings(s3_settings.model_copy(update={"s3_bucket": ""})) is None
    s3_session.info[blob_objects.STORE_KEY] = off
    assert blobs.put_stream(s3_session, [os.urandom(2 * MIN_BYTES)], "x").location == IN_DATABASE
    assert b"".join(blobs.iter_blob(s3_session, old.id)) == data


def test_a_checkpoints_large_files_go_up_before_any_row_is_written(s3_session, store: ObjectStore,
                                                                   tmp_path: Path) -> None:
    # On SQLite the first row takes the one write lock until commit: uploading after it would stall other writers.
    paths = [tmp_path / "adapter.safetensors", tmp_path / "config.json", tmp_path / "optimizer.pt"]
    for path, size in zip(paths, (MIN_BYTES, 10, 2 * MIN_BYTES), strict=True):
        path.write_bytes(os.urandom(size))
    order: list[str] = []

    def uploaded(**_kwargs) -> None:
        order.append("upload")

    def wrote(_conn, _cursor, statement: str, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT"):
            order.append("insert")

    connection = s3_session.connection()
    store.client.meta.events.register("before-send.s3.*", uploaded)
    event.listen(connection, "before_cursor_execute", wrote)
    try:
        stored = blobs.put_files(s3_session, paths, "application/octet-stream")
    finally:
        event.remove(connection, "before_cursor_execute", wrote)
        store.client.meta.events.unregister("before-send.s3.*", uploaded)
    assert [blob.location for blob in stored] == [IN_OBJECT_STORE, IN_DATABASE, IN_OBJECT_STORE]
    assert "upload" in order and "upload" not in order[order.index("insert") :]
    assert [blob.sha256 for blob in stored] == [_sha(path.read_bytes()) for path in paths]


def test_garbage_collection_deletes_the_object_once_it_commits(s3_session, store: ObjectStore) -> None:
    blob = blobs.put_stream(s3_session, [os.urandom(MIN_BYTES)], "x")
    s3_session.commit()
    with s3_session.begin_nested():  # a savepoint released is not the unit's commit
        assert blobs.collect_garbage(s3_session, [blob.id]) == 1
    assert blob.object_key in _keys(store)  # the row's delete may still roll back
    s3_session.commit()
    assert blob.object_key not in _keys(store)


def test_a_collection_undone_keeps_the_object(s3_session, store: ObjectStore) -> None:
    blob = blobs.put_stream(s3_session, [os.urandom(MIN_BYTES)], "x")
    s3_session.commit()
    with pytest.raises(RuntimeError), s3_session.begin_nested():  # a savepoint rolled back, its unit committed
        blobs.collect_garbage(s3_session, [blob.id])
        raise RuntimeError("undo")
    s3_session.commit()
    assert blob.object_key in _keys(store)
    assert b"".join(blobs.iter_blob(s3_session, blob.id))


def test_a_missing_object_is_a_clear_error(s3_session, store: ObjectStore, tmp_path: Path) -> None:
    blob = blobs.put_stream(s3_session, [os.urandom(MIN_BYTES)], "x")
    store.client.delete_object(Bucket=store.bucket, Key=blob.object_key)
    reads = [lambda: b"".join(blobs.iter_blob(s3_session, blob.id)),
             lambda: blobs.read_range(s3_session, blob.id, 0, 10),
             lambda: blobs.export_to_file(s3_session, blob.id, tmp_path / "x.bin")]
    for read in reads:
        with pytest.raises(BlobUnavailable) as error:
            read()
        assert error.value.code == "blob_object_missing"
        assert blob.object_key in error.value.message and store.bucket in error.value.message


def test_a_process_without_the_settings_says_which_it_needs(s3_session) -> None:
    blob = blobs.put_stream(s3_session, [os.urandom(MIN_BYTES)], "x")
    s3_session.info[blob_objects.STORE_KEY] = None
    with pytest.raises(BlobUnavailable, match="LORASTUDIO_S3_BUCKET") as error:
        blobs.read_range(s3_session, blob.id, 0, 10)
    assert error.value.code == "object_store_not_configured"


def test_the_sweep_removes_old_objects_no_blob_names(s3_session, store: ObjectStore) -> None:
    named = blobs.put_stream(s3_session, [os.urandom(MIN_BYTES)], "x")
    orphan = store.new_key()  # as a unit of work that rolled back after its upload leaves it
    store.client.put_object(Bucket=store.bucket, Key=orphan, Body=b"orphaned")
    stale = store.client.create_multipart_upload(Bucket=store.bucket, Key=store.new_key())["UploadId"]
    assert blob_objects.sweep(s3_session, timedelta(hours=1)) == 0  # too young to be garbage
    assert blob_objects.sweep(s3_session, timedelta(0)) >= 1
    assert orphan not in _keys(store) and named.object_key in _keys(store)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix).get("Uploads", [])
    assert stale not in {upload["UploadId"] for upload in uploads}


def test_staged_files_go_to_the_bucket_then_are_adopted_or_discarded(s3_resources: Resources, store: ObjectStore,
                                                                      tmp_path: Path) -> None:
    large, small = tmp_path / "large.bin", tmp_path / "small.bin"
    large.write_bytes(os.urandom(PART + 7))
    small.write_bytes(b"tiny")
    with s3_resources.session_factory() as session:  # staging commits for real, on a connection of its own
        staged = [blob_staging.stage_file(session, path, "x") for path in (large, small, large, large)]
        placeholders = [session.get(Blob, item.blob_id) for item in staged]
        assert [p.location for p in placeholders] == [IN_OBJECT_STORE, IN_DATABASE, IN_OBJECT_STORE, IN_OBJECT_STORE]
        assert {placeholders[0].object_key, placeholders[2].object_key} <= _keys(store)  # sent before adoption
        with session.begin_nested():
            blob_staging.lock_for_adoption(session, staged[:3])
            blob, tiny, same = (blob_staging.adopt(session, item) for item in staged[:3])
        session.commit()
        assert (blob.sha256, blob.location, tiny.location) == (_sha(large.read_bytes()), IN_OBJECT_STORE, IN_DATABASE)
        assert same.id == blob.id and placeholders[2].object_key not in _keys(store)  # the duplicate's object went
        blob_staging.discard(session, staged[3:])  # as after a failed adoption
        assert placeholders[3].object_key not in _keys(store)
        assert blobs.collect_garbage(session, [blob.id, tiny.id]) == 2
        session.commit()
        assert blob.object_key not in _keys(store)


def test_an_abandoned_placeholders_object_is_swept_with_it(s3_resources: Resources, store: ObjectStore) -> None:
    key = store.new_key()  # a process killed while staging left its placeholder and part of its bytes
    with session_scope(s3_resources.session_factory) as session:
        session.add(blobs.placeholder("x", key))
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"partial")
    with session_scope(s3_resources.session_factory) as session:
        assert blob_staging.sweep_abandoned(session, older_than=timedelta(0)) >= 1
    assert key not in _keys(store)


READER = """
import hashlib, sys
from app.core import blobs
from app.core.db import session_scope
from app.core.resources import Resources
res = Resources()  # settings from the environment only
with session_scope(res.session_factory) as session:
    print(hashlib.sha256(b"".join(blobs.iter_blob(session, int(sys.argv[1])))).hexdigest())
"""


def test_a_worker_elsewhere_needs_only_the_database_url_and_the_s3_settings(s3_resources: Resources,
                                                                            s3_settings: Settings,
                                                                            tmp_path: Path) -> None:
    data = os.urandom(MIN_BYTES + 99)
    with session_scope(s3_resources.session_factory) as session:
        blob_id = blobs.put_stream(session, [data], "x").id
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LORASTUDIO_DATA_DIR": str(tmp_path / "elsewhere"),
           "DATABASE_URL": s3_settings.resolved_database_url, "LORASTUDIO_BLOB_STORE": "s3",
           "LORASTUDIO_S3_ENDPOINT_URL": s3_settings.s3_endpoint_url, "LORASTUDIO_S3_BUCKET": s3_settings.s3_bucket,
           "LORASTUDIO_S3_PREFIX": s3_settings.s3_prefix, "LORASTUDIO_S3_ACCESS_KEY_ID": "test",
           "LORASTUDIO_S3_SECRET_ACCESS_KEY": "test"}
    try:
        reader = subprocess.run([sys.executable, "-c", READER, str(blob_id)], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert reader.returncode == 0, reader.stderr[-3000:]
        assert reader.stdout.strip() == _sha(data)
    finally:
        with session_scope(s3_resources.session_factory) as session:
            blobs.collect_garbage(session, [blob_id])


def test_the_s3_store_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="s3_bucket"):
        Settings(blob_store="s3", s3_bucket="")
