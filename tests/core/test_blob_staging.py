"""Staging an upload's files (app/core/blob_staging.py) on a connection of their own, then adopting them in the
request's unit of work: another writer never waits for the whole copy, and the adoption survives one that commits
meanwhile (SQLite's busy snapshot)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.core import blob_staging
from app.core.db import session_scope
from app.core.models import Blob, User
from app.core.models.blob import PENDING_PREFIX

pytestmark = pytest.mark.committed  # staging commits on its own connection: the test must see it for real


def _file(tmp_path: Path, size: int, byte: bytes = b"s") -> Path:
    path = tmp_path / f"file-{size}"
    path.write_bytes(byte * size)
    return path


def test_staged_then_adopted_is_a_blob_named_by_its_hash(resources, tmp_path: Path) -> None:  # noqa: ANN001
    path = _file(tmp_path, 3 * (1 << 20) + 5, b"a")
    with resources.session_factory() as session:
        staged = blob_staging.stage_file(session, path, "x")
        assert not staged.final
        with session.begin_nested():
            blob_staging.lock_for_adoption(session, [staged])
            blob = blob_staging.adopt(session, staged)
        session.commit()
        assert blob.size == path.stat().st_size and not blob.sha256.startswith(PENDING_PREFIX)


def test_adoption_holds_while_another_writer_commits_meanwhile(resources, tmp_path: Path, admin) -> None:  # noqa: ANN001
    if resources.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's busy snapshot; PostgreSQL locks rows")
    wrote = threading.Event()

    def other_writer() -> None:
        with session_scope(resources.session_factory) as other:
            other.execute(update(User).where(User.id == admin.id).values(username=User.username))
        wrote.set()

    with resources.session_factory() as session:
        staged = blob_staging.stage_file(session, _file(tmp_path, 1000, b"b"), "x")
        with session.begin_nested():
            blob_staging.lock_for_adoption(session, [staged])  # the write lock first: the other writer waits
            writer = threading.Thread(target=other_writer)
            writer.start()
            time.sleep(0.3)
            assert not wrote.is_set()
            session.scalar(select(Blob.id).where(Blob.id == staged.blob_id))  # a read, then the adoption's writes
            blob_staging.adopt(session, staged)
        session.commit()
    writer.join(10)
    assert wrote.is_set()


def test_abandoned_placeholders_are_swept_and_fresh_ones_kept(resources, tmp_path: Path) -> None:  # noqa: ANN001
    from datetime import timedelta

    with resources.session_factory() as session:
        staged = blob_staging.stage_file(session, _file(tmp_path, 10, b"c"), "x")
    with session_scope(resources.session_factory) as session:
        assert blob_staging.sweep_abandoned(session) == 0  # hours old before it goes
        assert session.get(Blob, staged.blob_id) is not None
        assert blob_staging.sweep_abandoned(session, older_than=timedelta(0)) >= 1
        assert session.get(Blob, staged.blob_id) is None
