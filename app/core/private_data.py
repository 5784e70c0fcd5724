"""The data folder holds datasets, password hashes and session tokens: only the studio's own account may read it.

Processes of the studio create files with umask 077 (folders 0700, files 0600); a data folder or SQLite file made
before (or by hand) with wider rights is narrowed at start, with a warning saying so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from app.core.config import Settings

log = logging.getLogger(__name__)
PRIVATE_UMASK = 0o077
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_umask() -> None:
    """New files of this process and its children: readable by their owner only."""
    os.umask(PRIVATE_UMASK)


def secure_data_dir(settings: Settings) -> list[str]:
    """Make the data folder (0700) or narrow an existing one and its SQLite files (0600); returns the warnings."""
    folder = settings.data_dir
    if settings.database_url and not folder.exists():
        return []  # the database lives elsewhere; a folder is made when something needs one (mode 0700 by umask)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    warnings = _narrow(folder, 0o700)
    database = Path(settings.resolved_database_url.removeprefix("sqlite:///")) if not settings.database_url else None
    for suffix in SQLITE_SUFFIXES if database else ():
        warnings += _narrow(Path(f"{database}{suffix}"), 0o600)
    for warning in warnings:
        log.warning(warning)
    return warnings


def _narrow(path: Path, mode: int) -> list[str]:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return []
    if not current & 0o077:
        return []
    try:
        path.chmod(mode)
    except PermissionError:
        return [f"{path} is readable by other local users (mode {current:o}) and could not be narrowed; run "
                f"`chmod {mode:o} {path}` as its owner"]
    return [f"{path} was readable by other local users (mode {current:o}); narrowed to {mode:o}"]
