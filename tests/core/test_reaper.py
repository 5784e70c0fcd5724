"""A run whose worker stopped sending heartbeats is queued again to resume, failed with a reason after too many
attempts, or cancelled if a cancel was pending; live runs are left alone."""

from __future__ import annotations

from datetime import timedelta

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
