"""Riding out a database outage: which errors are worth another try, the backoff, and the patience's end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.stack import free_port
from worker.jobs.outage import DatabaseAway, retrying, transient


def _unreachable() -> OperationalError:
    """The error a real connection attempt to a PostgreSQL that is not there raises."""
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
                           connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a database answered on a free port")


def _locked(path: Path) -> OperationalError:
    """SQLite's 'database is locked': another connection holds the write lock past the busy timeout."""
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with engine.begin() as holder:
            holder.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            except OperationalError as exc:
                return exc
    finally:
        engine.dispose()
    raise AssertionError("the second writer was not refused")


def test_a_refused_connection_or_a_lock_is_transient_a_constraint_is_not(tmp_path: Path) -> None:
    assert transient(_unreachable())
    assert transient(_locked(tmp_path / "locked.db"))
    assert not transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not transient(ValueError("a bug"))


def test_retrying_goes_through_once_the_database_is_back() -> None:
    away = _unreachable()
    calls: list[float] = []

    def work() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise away
        return "stored"

    assert retrying(work, patience_s=30, what="writing") == "stored"
    waits = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert waits == sorted(waits) and waits[0] >= 0.15, waits  # backing off, not hammering


def test_retrying_gives_up_after_its_patience_and_at_once_on_other_errors() -> None:
    away = _unreachable()

    def down() -> None:
        raise away

    started = time.monotonic()
    with pytest.raises(DatabaseAway):
        retrying(down, patience_s=1.0, what="writing")
    assert time.monotonic() - started < 1.5
    with pytest.raises(DatabaseAway):
        retrying(down, patience_s=60, what="writing", give_up=lambda: True)  # the attempt was handed on
    calls = []

    def broken() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        retrying(broken, patience_s=60, what="writing")
    assert calls == [1]
