"""Each dataset's canonical JSON Lines, stored at upload beside a row index: exact rows, paged by range reads."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from app.core import blobs, schema
from app.core.datasets import iter_canonical
from app.core.datasets.canonical_file import INDEX_STRIDE, OFFSET, encode_row
from app.core.db import make_engine, make_session_factory, session_scope
from app.core.errors import StudioError
from app.core.models import Blob, Dataset
from app.core.services import analyses as analysis_service
from app.core.services import datasets as dataset_service
from tests.core.test_dataset_formats import CASES, ROWS, WRITERS, write_jsonl
from tests.support.blob_reads import count_range_reads
from tests.support.uploads import stored_counts


def chat_rows(count: int, width: int = 40) -> list[dict]:
    """Chat rows of varied lengths, some non-ASCII (the canonical form keeps it unescaped)."""
    return [{"messages": [{"role": "user", "content": f"Question {i}: " + "ü·" * (i % 7) + "x" * (i * 13 % width)},
                          {"role": "assistant", "content": f"Answer {i}\n" + "—" * (i % 5) + "y" * (i % width)}]}
            for i in range(count)]


def canonical_bytes(path: Path, file_type: str, format: str) -> bytes:
    """What write_canonical_jsonl writes for the file."""
    return b"".join(encode_row(row) for row in iter_canonical(path, file_type, format))  # type: ignore[arg-type]


def offsets(session, dataset: Dataset) -> list[int]:  # noqa: ANN001
    data = b"".join(blobs.iter_blob(session, dataset.canonical_index_blob_id))
    return [value for (value,) in OFFSET.iter_unpack(data)]


def upload(session, tmp_path: Path, rows: list[dict], name: str = "d.jsonl") -> Dataset:  # noqa: ANN001
    return dataset_service.create_dataset(session, write_jsonl(tmp_path / name, rows), name)


@pytest.mark.parametrize(("file_type", "format"), CASES, ids=[f"{f}-{t}" for t, f in CASES])
def test_canonical_blob_holds_exactly_the_canonical_rows(session, tmp_path: Path, file_type: str,
                                                         format: str) -> None:
    path = WRITERS[file_type](tmp_path / f"upload.{file_type}", ROWS[format])
    dataset = dataset_service.create_dataset(session, path, path.name)
    canonical = session.get(Blob, dataset.canonical_blob_id)
    expected = canonical_bytes(path, file_type, format)
    assert b"".join(blobs.iter_blob(session, canonical.id)) == expected
    assert canonical.media_type == "application/x-ndjson" and canonical.size == len(expected)
    assert offsets(session, dataset) == [0, len(expected)]  # two rows: the first row's offset, then the end


def test_index_marks_every_stride_th_row_and_the_end(session, tmp_path: Path) -> None:
    rows = chat_rows(2 * INDEX_STRIDE + 3)
    dataset = upload(session, tmp_path, rows)
    lines = [encode_row(row) for row in rows]
    starts = [sum(map(len, lines[:n])) for n in range(0, len(rows), INDEX_STRIDE)]
    assert offsets(session, dataset) == [*starts, sum(map(len, lines))]
    text = b"".join(blobs.iter_blob(session, dataset.canonical_blob_id)).decode("utf-8")
    assert "ü·" in text and "\\u" not in text  # ensure_ascii=False, as write_canonical_jsonl writes


def test_rejected_upload_stores_nothing(resources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # 300 good rows are canonicalised before the bad one: the partial canonical file must go nowhere.
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": f"row {i}"} for i in range(300)] + [{"text": ""}])
    with session_scope(resources.session_factory) as session:
        before = stored_counts(session)
    with pytest.raises(StudioError) as caught, session_scope(resources.session_factory) as session:
        dataset_service.create_dataset(session, path, path.name)
    assert (caught.value.code, caught.value.line) == ("empty_field", 301)
    with session_scope(resources.session_factory) as session:
        assert stored_counts(session) == before
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("size", [20, 1, 7, 13, 19, 21, 40, 50, 200])
def test_rows_page_returns_the_right_rows_for_any_page_size(session, tmp_path: Path, size: int) -> None:
    rows = chat_rows(103)
    dataset = upload(session, tmp_path, rows)
    pages = -(-len(rows) // size)
    for page in {p for p in (1, 2, pages // 2, pages - 1, pages) if 1 <= p <= pages}:
        got = analysis_service.rows_page(session, dataset, page, size)
        start = (page - 1) * size
        assert (got.page, got.pages) == (page, pages)
        assert got.rows == list(enumerate(rows[start : start + size], start=start + 1)), (page, size)
    assert analysis_service.rows_page(session, dataset, 999, size).page == pages
    assert analysis_service.rows_page(session, dataset, -3, size).rows[0] == (1, rows[0])


def test_a_page_reads_o_page_bytes(session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"text": f"document {i} " + os.urandom(600).hex()} for i in range(5000)]  # about 5.8 MiB
    dataset = upload(session, tmp_path, rows, "big.jsonl")
    assert session.get(Blob, dataset.canonical_blob_id).size > 5 * blobs.CHUNK_SIZE
    read = count_range_reads(monkeypatch)
    pages = len(rows) // 20
    for page in range(1, pages + 1):  # every page, so some span a chunk boundary
        read.clear()
        got = analysis_service.rows_page(session, dataset, page)
        assert [row for _, row in got.rows] == rows[(page - 1) * 20 : page * 20]
        assert len(read) == 2 and sum(read) < 64 * 1024, (page, read)


def test_stored_dataset_without_canonical_blob_is_filled_in_on_first_read(session, tmp_path: Path) -> None:
    dataset = legacy_dataset(session, tmp_path, chat_rows(45))
    page = analysis_service.rows_page(session, dataset, 3)
    assert page.rows == list(enumerate(chat_rows(45)[40:], start=41))
    assert dataset.canonical_blob_id is not None and dataset.canonical_index_blob_id is not None


def test_backfill_canonical_fills_in_an_older_dataset(session, tmp_path: Path) -> None:
    dataset = legacy_dataset(session, tmp_path, chat_rows(30))
    assert dataset.id in dataset_service.datasets_to_backfill(session)
    assert dataset_service.backfill_canonical(session, dataset.id) is True
    assert dataset_service.backfill_canonical(session, dataset.id) is False  # already done
    assert dataset.id not in dataset_service.datasets_to_backfill(session)
    path = blobs.export_to_file(session, dataset.blob_id, tmp_path / "raw.jsonl")
    assert b"".join(blobs.iter_blob(session, dataset.canonical_blob_id)) == canonical_bytes(path, "jsonl", "messages")


def legacy_dataset(session, tmp_path: Path, rows: list[dict]) -> Dataset:  # noqa: ANN001
    """A dataset as code before revision 0006 stored it: the raw blob only."""
    blob = blobs.put_file(session, write_jsonl(tmp_path / f"{uuid.uuid4().hex}.jsonl", rows), "application/x-ndjson")
    dataset = Dataset(name="old", filename="old.jsonl", file_type="jsonl", format="messages", row_count=len(rows),
                      size_bytes=blob.size, sha256=blob.sha256, columns=list(rows[0]), preview=rows[:5],
                      blob_id=blob.id)
    session.add(dataset)
    session.flush()
    return dataset


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the test session's kind (SQLite, or PostgreSQL with LORASTUDIO_TEST_DB)."""
    if os.environ.get("LORASTUDIO_TEST_DB", "sqlite") != "postgresql":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    from tests.conftest import _create_pg_database, _drop_pg_database

    url, name = _create_pg_database()
    yield url
    _drop_pg_database(name)


def test_upgrade_backfills_datasets_stored_before_0006(fresh_url: str, tmp_path: Path) -> None:
    command.upgrade(schema.alembic_config(fresh_url), "0005_model_remote_code")
    rows, bad = chat_rows(61), [{"messages": [{"role": "user", "content": "no answer"}]}]
    engine = make_engine(fresh_url)
    try:
        factory = make_session_factory(engine)
        old_ids = [insert_before_0006(factory, tmp_path, rows), insert_before_0006(factory, tmp_path, bad)]

        schema.upgrade(fresh_url)  # migrates, then backfills (the bad one is logged and left as it was)

        with session_scope(factory) as session:
            good, refused = (session.get(Dataset, dataset_id) for dataset_id in old_ids)
            assert refused.canonical_blob_id is None and good.canonical_index_blob_id is not None
            page = analysis_service.rows_page(session, good, 2, 25)
            assert page.rows == list(enumerate(rows[25:50], start=26)) and page.pages == 3
        command.downgrade(schema.alembic_config(fresh_url), "0005_model_remote_code")
        with engine.connect() as connection:
            assert "canonical_blob_id" not in {c["name"] for c in sa.inspect(connection).get_columns("datasets")}
    finally:
        engine.dispose()


def _blob_before_0019(session, path: Path) -> int:  # noqa: ANN001
    """A blob stored with the columns blobs had before revision 0019 (the ORM model has today's): one chunk."""
    data = path.read_bytes()
    table = sa.table("blobs", *(sa.column(name) for name in ("id", "sha256", "size", "media_type", "created_at")))
    chunks = sa.table("blob_chunks", sa.column("blob_id"), sa.column("seq"), sa.column("data", sa.LargeBinary))
    blob_id = session.execute(table.insert().values(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), media_type="application/x-ndjson",
        created_at=sa.func.now()).returning(table.c.id)).scalar_one()
    assert len(data) <= blobs.CHUNK_SIZE
    session.execute(chunks.insert().values(blob_id=blob_id, seq=0, data=data))
    return blob_id


def insert_before_0006(factory, tmp_path: Path, rows: list[dict]) -> int:  # noqa: ANN001
    """A dataset row written with the columns revision 0005 had, and its raw blob."""
    raw = write_jsonl(tmp_path / f"{uuid.uuid4().hex}.jsonl", rows)
    datasets = sa.table("datasets", *(sa.column(name) for name in (
        "id", "name", "filename", "file_type", "format", "row_count", "size_bytes", "sha256", "blob_id",
        "created_at")), sa.column("columns", sa.JSON), sa.column("preview", sa.JSON))
    with session_scope(factory) as session:
        blob_id, data = _blob_before_0019(session, raw), raw.read_bytes()
        values = {"name": "old", "filename": raw.name, "file_type": "jsonl", "format": "messages",
                  "row_count": len(rows), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "columns": list(rows[0]), "preview": rows[:1], "blob_id": blob_id,
                  "created_at": sa.func.now()}
        return session.execute(datasets.insert().values(values).returning(datasets.c.id)).scalar_one()
