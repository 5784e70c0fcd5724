"""Per-test isolation: the app and the test share one connection whose outer transaction is rolled back at the end.

SQLAlchemy's "join a session into an external transaction" recipe (polar's tests/fixtures/database.py does the
same): every session the test or the app opens joins the test's transaction through a SAVEPOINT, so a route's
commit is visible to the rest of the test and to nothing after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from app.core.resources import Resources

WROTE = "test_session_wrote"


class JoinedSession(Session):
    """A session on the test's shared connection whose rollback spares the app's commits when it wrote nothing.

    Sessions on one connection nest their savepoints: a test that reads, calls a route, then rolls back "to read
    fresh" would roll back to its own savepoint, taking the route's commit with it (and a test that asserts a
    refused request stored nothing would pass however much was stored). Ending a transaction that wrote nothing
    by releasing its savepoint is what rolling it back means on a connection of its own.
    """

    def rollback(self) -> None:
        """Roll back this session's writes; a transaction that wrote nothing is just ended (and its objects expired)."""
        transaction = self.get_transaction()
        if (transaction is None or not transaction.is_active or self.info.get(WROTE)
                or self.new or self.dirty or self.deleted):
            super().rollback()
            return
        self.commit()
        self.expire_all()


@event.listens_for(JoinedSession, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info[WROTE] = True


@event.listens_for(JoinedSession, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if not state.is_select:  # DML, and text() whose effect is unknown: count it as a write
        state.session.info[WROTE] = True


@event.listens_for(JoinedSession, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(WROTE, None)


def _begin(connection: Connection) -> None:
    """Open the outer transaction; on SQLite, for real (see below)."""
    connection.begin()
    if connection.dialect.name == "sqlite":
        # pysqlite defers BEGIN to the first INSERT/UPDATE/DELETE, so the first SAVEPOINT would itself open the
        # outermost transaction and its RELEASE (a session's commit) would commit to the file. IMMEDIATE takes the
        # write lock now: a deferred transaction that read first and then writes after another process committed
        # (the session's live studio keeps writing heartbeats) fails at once with "database is locked" (WAL's
        # busy snapshot, which no busy timeout waits out); the live studio's writers wait for the test instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def rolled_back(resources: Resources) -> Iterator[sessionmaker[Session]]:
    """Point resources.session_factory (the app's and the test's sessions) at one connection, rolled back after."""
    saved = resources.session_factory
    with resources.engine.connect() as connection:
        _begin(connection)
        # The studio's own options (expire_on_commit, the job sender in info), on the test's connection.
        factory = sessionmaker(**{**saved.kw, "bind": connection}, class_=JoinedSession,
                               join_transaction_mode="create_savepoint")
        resources.__dict__["session_factory"] = factory
        try:
            yield factory
        finally:
            resources.__dict__["session_factory"] = saved
            connection.rollback()
