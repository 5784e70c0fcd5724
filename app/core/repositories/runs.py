"""Queries and conditional updates on runs, metric points and artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app.core.access import visible
from app.core.db import utcnow
from app.core.models import Artifact, MetricPoint, Run, RunStatus, TimelineEntry, User


def get(session: Session, run_id: int) -> Run | None:
    """A run by id."""
    return session.get(Run, run_id)


def list_recent(session: Session, status: str | None = None, limit: int = 200,
                user: User | None = None) -> Sequence[Run]:
    """Newest runs first, optionally of one status: those user may see (every one for admins and internal callers)."""
    query = visible(select(Run), Run, user).order_by(Run.id.desc()).limit(limit)
    if status:
        query = query.where(Run.status == status)
    return session.scalars(query).all()


def transition(session: Session, run_id: int, from_: Sequence[RunStatus], *conditions: Any, **values: Any) -> bool:
    """Atomically move a run out of one of the given states (and meeting conditions); False if it was not."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_([s.value for s in from_]), *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def touch(session: Session, run_id: int, **values: Any) -> None:
    """Update fields of a running run (progress, heartbeat)."""
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow(), **values))


def beat(session: Session, run_id: int, attempt: int) -> bool | None:
    """One attempt's heartbeat: the run's cancel flag, or None once the run is no longer running as that attempt."""
    if not transition(session, run_id, [RunStatus.running], Run.attempts == attempt, heartbeat_at=utcnow()):
        return None
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def attempts(session: Session, run_id: int) -> int:
    """How many times the run has been claimed."""
    return session.scalar(select(Run.attempts).where(Run.id == run_id)) or 0


def metric_points(session: Session, run_id: int, after_seq: int = 0) -> Sequence[MetricPoint]:
    """Points of a run with seq above after_seq, in order."""
    query = select(MetricPoint).where(MetricPoint.run_id == run_id, MetricPoint.seq > after_seq)
    return session.scalars(query.order_by(MetricPoint.seq)).all()


def last_seq(session: Session, run_id: int) -> int:
    """Highest seq a run has given out (0 if none), stored points and the points a resumed attempt replaced."""
    return session.scalar(select(Run.metric_seq).where(Run.id == run_id)) or 0


def take_seqs(session: Session, run_id: int, count: int) -> int:
    """Reserve `count` seqs for new points in one atomic update; returns the first."""
    query = update(Run).where(Run.id == run_id).values(metric_seq=Run.metric_seq + count).returning(Run.metric_seq)
    return session.execute(query.execution_options(synchronize_session=False)).scalar_one() - count + 1


def drop_points_after(session: Session, run_id: int, step: int) -> int:
    """Delete a run's metric points past a step (an attempt that resumes there reports them again)."""
    query = delete(MetricPoint).where(MetricPoint.run_id == run_id, MetricPoint.step > step)
    return session.execute(query.execution_options(synchronize_session=False)).rowcount


def artifacts(session: Session, run_id: int, kind: str = "adapter") -> Sequence[Artifact]:
    """A run's stored files of one kind, by name."""
    query = select(Artifact).where(Artifact.run_id == run_id, Artifact.kind == kind).order_by(Artifact.name)
    return session.scalars(query).all()


def timeline(session: Session, run_id: int) -> Sequence[TimelineEntry]:
    """A run's events, oldest first."""
    return session.scalars(select(TimelineEntry).where(TimelineEntry.run_id == run_id).order_by(TimelineEntry.id)).all()


def stale_running(session: Session, heartbeat_before: datetime) -> Sequence[Run]:
    """Running runs whose last heartbeat is older than the cut-off (their worker is gone)."""
    query = select(Run).where(Run.status == RunStatus.running, Run.heartbeat_at < heartbeat_before)
    return session.scalars(query.order_by(Run.id)).all()


def mark_dispatched(bind: Engine | Connection, run_id: int, broker_id: str | None) -> None:
    """Record which broker instance holds a run's queue message (after commit, so on its own connection; a session
    bound to a Connection, as in tests, records it there, in that connection's transaction)."""
    statement = update(Run).where(Run.id == run_id).values(dispatched_to=broker_id)
    if isinstance(bind, Connection):
        bind.execute(statement)
        return
    with bind.connect() as connection:
        connection.execute(statement)
        connection.commit()


def undelivered_queued(session: Session, broker_id: str, created_before: datetime) -> Sequence[int]:
    """Queued runs whose message never reached this broker instance (send failed, or Redis restarted since)."""
    query = select(Run.id).where(
        Run.status == RunStatus.queued,
        Run.created_at < created_before,
        or_(Run.dispatched_to.is_(None), Run.dispatched_to != broker_id),
    )
    return session.scalars(query.order_by(Run.id)).all()
