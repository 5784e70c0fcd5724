"""A run whose worker stopped sending heartbeats is queued again to resume, failed with a reason after too many
attempts, or cancelled if a cancel was pending; live runs are left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core.db import utcnow
from app.core.models import Run, RunStatus, TimelineEntry
from app.core.services.recovery import reap_lost_runs
from tests.support.rows import insert_run

SILENT = timedelta(seconds=30)


def _running_run(session, heartbeat_age_s: float, attempts: int = 1, cancel: bool = False) -> int:
    return insert_run(session, worker="w1@host", heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age_s),
                      attempts=attempts, cancel_requested=cancel)


def _kinds(session, run_id: int) -> list[str]:
    query = select(TimelineEntry.kind).where(TimelineEntry.run_id == run_id).order_by(TimelineEntry.id)
    return list(session.scalars(query))


def test_silent_runs_are_requeued_then_failed_after_max_attempts(session) -> None:
    retried, exhausted = _running_run(session, 300, attempts=1), _running_run(session, 300, attempts=3)
    stopping, alive = _running_run(session, 300, cancel=True), _running_run(session, 5)
    reaped = reap_lost_runs(session, SILENT, max_attempts=3)
    session.expire_all()  # the reaper updates rows with SQL; read them back from the database
    assert reaped == {retried: "queued", exhausted: "failed", stopping: "cancelled"}
    again = session.get(Run, retried)
    assert again.status == RunStatus.queued and again.heartbeat_at is None and again.attempts == 1
    assert _kinds(session, retried) == ["requeued"]
    messages = select(TimelineEntry.message).where(TimelineEntry.run_id == retried)
    assert "attempt 1 of 3" in session.scalars(messages).one()
    failed = session.get(Run, exhausted)
    assert failed.status == RunStatus.failed and failed.error_code == "worker_lost" and failed.error_advice
    assert "3 attempts" in failed.error_message and _kinds(session, exhausted) == ["failed"]
    assert session.get(Run, stopping).status == RunStatus.cancelled
    assert session.get(Run, alive).status == RunStatus.running and _kinds(session, alive) == []
    assert reap_lost_runs(session, SILENT, max_attempts=3) == {}  # once only
    assert session.info.get("pending_jobs"), "the requeued run is sent to the workers once this commits"


def test_a_worker_whose_clock_runs_behind_is_not_reaped_while_it_beats(session, monkeypatch) -> None:
    """Workers on other hosts: heartbeats are stamped and judged by the database's clock, so a worker whose own
    clock is an hour behind the janitor's still counts as alive (stamped by its own clock, it was reaped)."""
    from app.core.repositories import runs as runs_repo

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite is one host's file: its processes share one clock")
    run_id = _running_run(session, 300)  # silent for 5 minutes …
    monkeypatch.setattr(runs_repo, "utcnow", lambda: utcnow() - timedelta(hours=1))  # … on a host an hour behind
    assert runs_repo.beat(session, run_id, attempt=1) is False  # … until it beats now
    assert reap_lost_runs(session, SILENT, max_attempts=3) == {}
    session.expire_all()
    assert abs((session.get(Run, run_id).heartbeat_at - utcnow()).total_seconds()) < 60
