"""A job's work folder (the user's exported data, the child's output) is private to the studio's account and held
under an exclusive lock while its job runs; the kernel drops the lock when the holder dies, however it dies, so a
folder whose lock can be taken belongs to no running attempt and may be swept."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from pathlib import Path

LOCK_FILE = ".in-use"
# The folders job runners make (worker/jobs/training.py, analysis.py); anything else in work_dir is left alone.
JOB_FOLDER = re.compile(r"^(run|analysis)-\d+-[0-9a-f]{8}$")
# A folder without its lock file yet may be one a runner made this instant and is about to lock.
UNLOCKED_GRACE_S = 60.0


def hold(workdir: Path) -> int:
    """Make workdir (mode 0700) and take its lock; returns the descriptor to give to release()."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release(fd: int) -> None:
    """Let go of a folder's lock (closing the descriptor drops it)."""
    os.close(fd)


def sweep(work_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the job folders under work_dir that no running attempt holds; returns those removed."""
    if not work_dir.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(work_dir.iterdir()):
        ours = folder.is_dir() and not folder.is_symlink() and JOB_FOLDER.match(folder.name)
        if ours and _remove_if_idle(folder, now):
            removed.append(folder)
    return removed


def _remove_if_idle(folder: Path, now: float) -> bool:
    lock = folder / LOCK_FILE
    if not lock.exists():
        if now - folder.stat().st_mtime < UNLOCKED_GRACE_S:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:  # its runner finished and removed it meanwhile
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live runner holds it
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
    return True
