"""Declarative base, engine and the unit-of-work scope."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy import MetaData, create_engine, event, func
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; constraint names are stable so migrations stay portable."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Timezone-aware now, the only clock models use."""
    return datetime.now(UTC)


def db_now(session: Session) -> Any:
    """Now by the clock heartbeats are written and judged by. On PostgreSQL the server's (statement_timestamp(), as
    SQL; not now(), the start of a transaction that may be old): workers on several hosts write heartbeats and a
    janitor on another compares them, so each host's own clock would let a worker whose clock runs behind look
    dead (and be reaped while it trains) or one ahead look alive. SQLite is one host's file: one clock."""
    return func.statement_timestamp() if session.get_bind().dialect.name == "postgresql" else utcnow()


def as_utc(moment: datetime) -> datetime:
    """A stored time as timezone-aware UTC (SQLite hands back naive datetimes; they were written in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    # WAL lets the web app read while a worker writes; busy_timeout waits instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Connections above pool_size for work that does not go through a DbGate (readiness probes, streamed downloads,
# scripts): the requests' slots never compete with them for the pool_size connections.
POOL_RESERVE = 10


def make_engine(url: str, pool_size: int = 5, pool_timeout_s: float = 30.0) -> Engine:
    """An engine for url with pool_size connections (+ POOL_RESERVE); SQLite gets WAL, a busy timeout and foreign
    keys. pool_timeout_s: how long a checkout waits when all are taken (then sqlalchemy.exc.TimeoutError)."""
    pool = {"pool_size": pool_size, "max_overflow": POOL_RESERVE, "pool_timeout": pool_timeout_s}
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///") or ":memory:" in url
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               **({} if in_memory else pool))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


class GateTimeout(Exception):
    """No DB slot came free in time."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"no database slot free within {waited_s:g} s")
        self.waited_s = waited_s


class DbGate:
    """How many units of work of an async (web) process may hold a pooled connection at once: `size`, at most the
    engine's pool_size, so whoever holds a slot always gets a connection at once. The others wait here, in the
    event loop, holding neither a thread nor a connection, for up to wait_s (then GateTimeout). Waiting is
    first come, first served, so latency grows by queueing instead of requests failing.

    The semaphore is made per event loop (a test may run several loops, one after the other, in one process)."""

    def __init__(self, size: int, wait_s: float) -> None:
        self.size, self.wait_s = size, wait_s
        self.waiting = 0
        self._semaphores: dict[int, anyio.Semaphore] = {}

    def _semaphore(self) -> anyio.Semaphore:
        key = id(asyncio.get_running_loop())
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            self._semaphores = {key: anyio.Semaphore(self.size, fast_acquire=True)}  # an older loop's is done
            semaphore = self._semaphores[key]
        return semaphore

    async def acquire(self) -> anyio.Semaphore:
        """Take a slot (hand what this returns back to release); GateTimeout after wait_s."""
        semaphore = self._semaphore()
        self.waiting += 1
        try:
            with anyio.fail_after(self.wait_s):
                await semaphore.acquire()
        except TimeoutError:
            raise GateTimeout(self.wait_s) from None
        finally:
            self.waiting -= 1
        return semaphore

    def release(self, slot: object) -> None:
        """Give back a slot taken by acquire."""
        if isinstance(slot, anyio.Semaphore):
            slot.release()

    def in_use(self) -> int:
        """Slots held now (in this loop)."""
        semaphore = self._semaphores.get(next(iter(self._semaphores), 0))
        return 0 if semaphore is None else self.size - semaphore.value


def make_session_factory(engine: Engine, info: dict | None = None) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (handy for responses); info is copied into each one's."""
    return sessionmaker(engine, expire_on_commit=False, info=info)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Only boundaries use this."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
