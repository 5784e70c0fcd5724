"""Jobs are sent when the unit of work that made their rows commits — not when a savepoint inside it is released,
not lost when a savepoint is rolled back — and a session that commits twice sends each commit's jobs. (A
recording sender stands in for Celery: what is under test is when `jobs.enqueue` sends, on a real SQLite session.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.core import jobs


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def __call__(self, task_name: str, kwargs: dict[str, Any], device_class: str | None = None) -> str:
        self.sent.append((task_name, kwargs, device_class))
        return "redis-1"

    def available(self) -> bool:
        return True


@pytest.fixture
def recorded(tmp_path) -> tuple[Session, Recorder]:  # noqa: ANN001
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    sender = Recorder()
    with Session(engine, info={jobs.SENDER_KEY: sender}) as session:
        yield session, sender
    engine.dispose()


def test_a_released_savepoint_sends_nothing_the_commit_sends_it(recorded) -> None:
    session, sender = recorded
    jobs.enqueue(session, "runs.execute", device_class="gpu24", run_id=1)
    with session.begin_nested():
        session.execute(text("INSERT INTO t (id) VALUES (1)"))
    assert sender.sent == []  # the run's row is not committed yet: a worker would not find it
    session.commit()
    assert sender.sent == [("runs.execute", {"run_id": 1}, "gpu24")]


def test_a_rolled_back_savepoint_keeps_the_jobs_a_rollback_drops_them(recorded) -> None:
    session, sender = recorded
    jobs.enqueue(session, "runs.execute", run_id=1)
    savepoint = session.begin_nested()
    savepoint.rollback()
    session.commit()
    assert sender.sent == [("runs.execute", {"run_id": 1}, None)]
    session.execute(text("INSERT INTO t (id) VALUES (2)"))  # run 2's row
    jobs.enqueue(session, "runs.execute", run_id=2)
    session.rollback()
    session.commit()
    assert len(sender.sent) == 1  # run 2's row was rolled back: nothing to send


def test_each_commit_of_one_session_sends_its_own_jobs(recorded) -> None:
    session, sender = recorded
    for run_id in (1, 2, 3):
        jobs.enqueue(session, "runs.execute", run_id=run_id)
        session.commit()
    assert [kwargs["run_id"] for _, kwargs, _ in sender.sent] == [1, 2, 3]
