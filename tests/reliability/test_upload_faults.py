"""Faults during an upload, on a real web process: SIGKILL while the body is received and while the rows are
stored, and the spool disk (a small tmpfs) filling up while receiving and while writing the canonical rows.
Nothing is half-stored (no dataset row; no blob but a staged placeholder, which the sweep removes), the full
disk gets a clear 507, and what a killed process left in the spool folder is removed when the web process
starts again."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.core import blob_staging
from app.core.config import Settings
from app.core.db import session_scope
from app.core.models import Blob, BlobChunk, Dataset
from app.core.models.blob import PENDING_PREFIX
from app.core.resources import Resources
from tests.support.accounts import Account
from tests.support.requirements import require
from tests.support.upload_server import web_server

MIB = 1 << 20


def _stored(resources: Resources) -> tuple[int, int, int]:
    """How many datasets, blobs and blob chunks the database holds (committed)."""
    with session_scope(resources.session_factory) as session:
        return tuple(session.scalar(select(func.count()).select_from(table)) for table in (Dataset, Blob, BlobChunk))


def _spool_folders(spool: Path) -> list[Path]:
    return sorted(spool.glob("upload-*")) if spool.is_dir() else []


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _upload_in_background(url: str, admin: Account, body: object, filename: str) -> threading.Thread:
    def post() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
            httpx.post(f"{url}/api/datasets", params={"filename": filename, "name": "half-stored"}, content=body,
                       headers=admin.headers, timeout=120)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def _restart_sweeps(settings: Settings, tmp_path: Path, spool: Path) -> None:
    """A fresh web process removes the spool folders a killed one left behind."""
    assert _spool_folders(spool), "the killed process left nothing to sweep: the test did not kill mid-upload"
    with web_server(settings, tmp_path / "web2.log", LORASTUDIO_UPLOAD_DIR=str(spool)):
        assert _spool_folders(spool) == []


def test_killed_while_receiving_leaves_nothing(settings: Settings, resources: Resources, admin: Account,
                                               tmp_path: Path) -> None:
    spool, release = tmp_path / "spool", threading.Event()
    before = _stored(resources)

    def body() -> Iterator[bytes]:
        for _ in range(8):
            yield b'{"text": "' + b"k" * (MIB - 13) + b'"}\n'
        release.wait(60)

    with web_server(settings, tmp_path / "web.log", LORASTUDIO_UPLOAD_DIR=str(spool)) as (url, proc):
        _upload_in_background(url, admin, body(), "killed.jsonl")
        _wait(lambda: any((f / "upload").exists() and (f / "upload").stat().st_size >= 4 * MIB
                          for f in _spool_folders(spool)), 60, "the upload to be half received")
        proc.kill()
        proc.wait()
        release.set()
    assert _stored(resources) == before
    _restart_sweeps(settings, tmp_path, spool)


def test_killed_while_storing_leaves_nothing(settings: Settings, resources: Resources, admin: Account,
                                             tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    big = tmp_path / "big.jsonl"
    big.write_bytes((b'{"text": "' + b"s" * 4000 + b'"}\n') * 25_000)  # 100 MB: seconds of storing
    before = _stored(resources)
    with web_server(settings, tmp_path / "web.log", LORASTUDIO_UPLOAD_DIR=str(spool)) as (url, proc):
        _upload_in_background(url, admin, big.read_bytes(), "stored.jsonl")
        _wait(lambda: _canonical_done(spool), 120, "the rows to be checked (storing begins)")
        proc.kill()
        proc.wait()
    # No dataset row; what the kill interrupted is at most a staged placeholder blob (app/core/blob_staging.py),
    # which nothing points to and which the janitor's sweep removes.
    assert _stored(resources)[0] == before[0]
    with session_scope(resources.session_factory) as session:
        left = session.scalars(select(Blob.sha256).where(Blob.sha256.notlike(f"{PENDING_PREFIX}%"))).all()
        assert len(left) == before[1], "a blob of the killed upload was stored for real"
        blob_staging.sweep_abandoned(session, older_than=timedelta(0))
    assert _stored(resources) == before
    _restart_sweeps(settings, tmp_path, spool)


def _canonical_done(spool: Path) -> bool:
    """The canonical rows are all written (their size holds still) and the process is storing blobs."""
    rows = list(spool.glob("upload-*/lorastudio-canonical-*/canonical.jsonl"))
    if not rows:
        return False
    size = rows[0].stat().st_size if rows[0].exists() else 0
    time.sleep(0.3)
    return size > 0 and rows[0].exists() and rows[0].stat().st_size == size


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs to spool uploads into (skipped where this process may not mount one)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(spool)], capture_output=True)
    require(mounted.returncode == 0, "cannot mount a tmpfs to fill up: run the tests as root (in a container, "
            f"with CAP_SYS_ADMIN): {mounted.stderr.decode().strip()}")
    try:
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


@pytest.mark.parametrize(("what", "body"), [
    # 40 MiB do not fit in the 16 MiB spool.
    ("receiving", (b'{"text": "' + b"f" * (MIB - 13) + b'"}\n') * 40),
    # 7 MiB fit, but their canonical form (Alpaca rows as chat messages) is more than twice as large.
    ("canonical rows", b'{"instruction": "q", "output": "a"}\n' * (7 * MIB // 36)),
])
def test_full_spool_disk_gives_507_and_stores_nothing(settings: Settings, resources: Resources, admin: Account,
                                                      small_spool: Path, tmp_path: Path, what: str,
                                                      body: bytes) -> None:
    before = _stored(resources)
    with web_server(settings, tmp_path / "web.log", LORASTUDIO_UPLOAD_DIR=str(small_spool)) as (url, _):
        response = httpx.post(f"{url}/api/datasets", params={"filename": "full.jsonl"}, content=body,
                              headers=admin.headers, timeout=120)
        assert response.status_code == 507, f"{what}: {response.text}"
        assert response.json()["error"]["code"] == "storage_full"
        assert "free space" in response.json()["error"]["message"]
        assert _spool_folders(small_spool) == []  # removed at once, not only at the next start
        again = httpx.post(f"{url}/api/datasets", params={"filename": "small.jsonl"}, content=b'{"text": "ok"}\n',
                           headers=admin.headers, timeout=60)
        assert again.status_code == 201, again.text  # the studio goes on once there is room
    assert _stored(resources)[0] == before[0] + 1
