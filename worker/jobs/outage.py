"""Riding out a database that is away for a while (restarted, failing over): which errors say so, and doing a
unit of work again with backoff until it goes through or the patience runs out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_WAIT_S, LONGEST_WAIT_S = 0.2, 2.0  # short waits: a restarted PostgreSQL answers again within seconds
# SQLSTATE classes worth another try: connection exceptions, operator intervention (shutdown, crash, starting up),
# too many connections.
PG_TRANSIENT = ("08", "57P", "53300")
SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (a full disk, SQLITE_FULL, is not cured by waiting)


class DatabaseAway(Exception):
    """The database stayed unreachable longer than the worker's patience (Settings.db_outage_s)."""


def transient(exc: BaseException) -> bool:
    """True for an error that trying again later may cure: no connection, a connection cut, a server shutting
    down or starting, too many connections, SQLite's lock timeout.

    A constraint violation, a full disk or a bug is no such error: it would fail the same way every time.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if hasattr(exc.orig, "sqlite_errorcode"):
        return exc.orig.sqlite_errorcode & 0xFF in SQLITE_BUSY
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:  # the server never answered (refused, unreachable, cut): psycopg has no SQLSTATE then
        return isinstance(exc, OperationalError | InterfaceError)
    return state.startswith(PG_TRANSIENT)


def retrying(work: Callable[[], T], patience_s: float, what: str, give_up: Callable[[], bool] = lambda: False) -> T:
    """work(), done again after a transient error (waits doubling up to LONGEST_WAIT_S) for up to patience_s.

    work must be one whole unit of work (its own session_scope): a failed try rolled back all of it. Raises
    DatabaseAway once the patience is spent or give_up() says nothing more may be written; any other error at once.
    """
    started, wait, tries = time.monotonic(), FIRST_WAIT_S, 0
    while True:
        try:
            result = work()
        except Exception as exc:
            if not transient(exc):
                raise
            tries += 1
            log.warning("%s failed (try %s, the database may be restarting): %s", what, tries, _first_line(exc))
            if give_up() or time.monotonic() - started + wait > patience_s:
                raise DatabaseAway(f"{what}: the database was unreachable for over {patience_s:.0f} s") from exc
            time.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_S)
            continue
        if tries:
            log.warning("%s went through after %s failed tries (%.1f s)", what, tries, time.monotonic() - started)
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
