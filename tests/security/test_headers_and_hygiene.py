"""Security headers on pages, the API, static files and errors; a data folder private to the studio's account
(made so by `lorastudio migrate`, narrowed when it was not); work folders of dead attempts swept at a worker's
start while those of running attempts stay."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.stack import Stack, worker_argv
from worker.jobs import workdir

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
            "referrer-policy": "strict-origin-when-cross-origin"}


@pytest.mark.parametrize("path", ["/login", "/healthz", "/", "/runs/new", "/api/runs", "/static/css/studio.css",
                                  "/runs/999999", "/api/runs/999999", "/no-such-page"])
def test_every_response_carries_the_security_headers(app, admin, path: str) -> None:  # noqa: ANN001
    with TestClient(app, headers=admin.headers) as client:
        response = client.get(path)
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (path, response.status_code, dict(response.headers))
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                      "object-src 'none'", "form-action 'self'"):
        assert directive in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def _migrate(data_dir: Path) -> subprocess.CompletedProcess:
    """`lorastudio migrate` in a child with the usual umask 022, on a SQLite studio in data_dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LORASTUDIO_DATA_DIR")}
    env["LORASTUDIO_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); sys.argv = ['lorastudio', "
                           "'migrate']; from app.cli import main; main()"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_migrate_makes_a_private_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "studio"
    result = _migrate(data_dir)
    assert result.returncode == 0, result.stderr
    assert _mode(data_dir) == 0o700
    for file in data_dir.glob("studio.db*"):
        assert _mode(file) == 0o600, file


def test_migrate_narrows_an_open_data_folder_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "open"
    assert _migrate(data_dir).returncode == 0
    data_dir.chmod(0o755)
    (data_dir / "studio.db").chmod(0o644)
    result = _migrate(data_dir)
    assert result.returncode == 0, result.stderr
    assert _mode(data_dir) == 0o700 and _mode(data_dir / "studio.db") == 0o600
    assert "readable by other local users (mode 755); narrowed to 700" in result.stderr
    assert "mode 644" in result.stderr


HOLDER = """
import sys, time
from pathlib import Path
from app.stack import Stack, worker_argv
from worker.jobs import workdir
workdir.hold(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def test_stale_work_folders_are_swept_and_running_ones_kept(tmp_path: Path) -> None:
    work = tmp_path / "work"
    running, killed, legacy, young, other = (work / "run-7-0123abcd", work / "run-8-89abcdef",
                                             work / "analysis-3-fedcba98", work / "run-9-00000000", work / "notes")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(running)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # a live attempt holds its folder
        dead = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(60)", "import os; os._exit(9)"),
                               str(killed)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert dead.returncode == 9  # an attempt killed while it held its folder
        for folder in (legacy, young, other):
            folder.mkdir(parents=True)
            (folder / "data.jsonl").write_text("{}\n")
        old = time.time() - 3600
        os.utime(legacy, (old, old))
        removed = workdir.sweep(work)
        assert sorted(removed) == sorted([killed, legacy])
        assert running.is_dir() and young.is_dir() and other.is_dir()
        assert not killed.exists() and not legacy.exists()
    finally:
        holder.kill()
        holder.wait()
    assert workdir.sweep(work) == [running]  # its holder is gone now


def test_a_job_folder_is_private_whatever_the_umask(tmp_path: Path) -> None:
    workdir.release(workdir.hold(tmp_path / "run-1-00000000"))
    assert _mode(tmp_path / "run-1-00000000") == 0o700


def test_a_starting_worker_sweeps_the_folder_a_killed_attempt_left(settings, tmp_path: Path) -> None:  # noqa: ANN001
    """A real Celery worker (of short jobs, named apart from any other on this host) starting on a data folder
    where an earlier attempt's folder, with a user's data in it, was left behind."""
    data_dir = tmp_path / "data"
    left = data_dir / "work" / "run-42-0badc0de"
    left.mkdir(parents=True)
    (left / "train.jsonl").write_text('{"text": "a user\'s private row"}\n')
    old = time.time() - 3600
    os.utime(left, (old, old))
    env = {**os.environ, "DATABASE_URL": settings.resolved_database_url, "REDIS_URL": settings.redis_url,
           "LORASTUDIO_DATA_DIR": str(data_dir), "LORASTUDIO_QUEUE": f"{settings.queue}-sweep",
           "LORASTUDIO_CALIBRATE": "false", "PYTHONUNBUFFERED": "1"}
    argv = worker_argv(f"{settings.queue}-sweep.short", 1, f"sweep-{uuid.uuid4().hex[:6]}")
    log = tmp_path / "worker.log"
    stack = Stack()
    stack.start("worker", argv, env, log)
    try:
        deadline = time.monotonic() + 90
        while "removed the work folder" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        stack.stop(grace_s=10)
    assert not left.exists(), log.read_text()[-3000:]
