"""Queries and conditional updates on runs, metric points and artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app.core.access import visible
from app.core.db import db_now, utcnow
from app.core.models import Artifact, MetricPoint, Run, RunStatus, TimelineEntry, User

# dispatched_to of a queued run that holds no queue message: a message was used up while every queued run's owner
# was at their running-runs quota. Such a run is sent again once its owner has a free slot (services.runs).
PARKED = "parked"
# Claims on PostgreSQL take this transaction-scoped advisory lock, so two workers never both see an owner one run
# under their running-runs quota and both start one (SQLite serialises writers by itself).
CLAIM_LOCK = 0x6C6F7261
# fairest_queued's device_class when the runs of every class compete (the queue page's order).
EVERY_CLASS = object()


def get(session: Session, run_id: int) -> Run | None:
    """A run by id."""
    return session.get(Run, run_id)


def get_many(session: Session, run_ids: set[int]) -> Sequence[Run]:
    """The runs of these ids (no check of who may see them: the caller listed ids they may)."""
    return session.scalars(select(Run).where(Run.id.in_(sorted(run_ids)))).all() if run_ids else []


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
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=db_now(session), **values))


def beat(session: Session, run_id: int, attempt: int) -> bool | None:
    """One attempt's heartbeat: the run's cancel flag, or None once the run is no longer running as that attempt."""
    if not transition(session, run_id, [RunStatus.running], Run.attempts == attempt, heartbeat_at=db_now(session)):
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


def names_starting(session: Session, owner_id: int | None, prefix: str) -> set[str]:
    """The names of one owner's runs (owner None: the runs nobody owns) that begin with prefix."""
    owner = Run.owner_id.is_(None) if owner_id is None else Run.owner_id == owner_id
    return set(session.scalars(select(Run.name).where(owner, Run.name.startswith(prefix, autoescape=True))))


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
        or_(Run.dispatched_to.is_(None), Run.dispatched_to.not_in([broker_id, PARKED])),
    )
    return session.scalars(query.order_by(Run.id)).all()


def fairest_queued(default_running: int, device_class: str | None | object = EVERY_CLASS):  # noqa: ANN201

    """The id of the queued run to start next: highest priority; then the owner with the fewest running runs, leaving
    out owners at their running-runs quota (users.max_running_runs, NULL: default_running; 0: no limit); then the
    owner served longest ago (whose last run started earliest, or never: one owner's backlog takes turns with every
    other owner's runs instead of going first); then each owner's oldest. Among the runs of one device class
    (None: the runs routed to any worker) when device_class is given: a message of one class's queue starts a run of
    that class, which the worker that took it can run."""
    owners = (select(Run.owner_id, func.sum(case((Run.status == RunStatus.running, 1), else_=0)).label("running"),
                     func.max(Run.started_at).label("served"))
              .where(Run.started_at.is_not(None)).group_by(Run.owner_id).subquery("owners"))
    busy = func.coalesce(owners.c.running, 0)
    limit = func.coalesce(User.max_running_runs, default_running)
    return (select(Run.id)
            .outerjoin(owners, owners.c.owner_id.is_not_distinct_from(Run.owner_id))
            .outerjoin(User, User.id == Run.owner_id)
            .where(Run.status == RunStatus.queued, or_(limit == 0, busy < limit), *of_class(device_class))
            .order_by(Run.priority.desc(), busy, owners.c.served.asc().nulls_first(), Run.created_at, Run.id)
            .limit(1).scalar_subquery().correlate(None))


def of_class(device_class: str | None | object) -> list[Any]:
    """The where-clause of one device class (None: the unrouted runs); none for EVERY_CLASS."""
    return [] if device_class is EVERY_CLASS else [Run.device_class.is_not_distinct_from(device_class)]


def device_class_of(session: Session, run_id: int) -> str | None:
    """The device class a run is routed to (None: any training worker, or no such run)."""
    return session.scalar(select(Run.device_class).where(Run.id == run_id))


def claim_fairest(session: Session, default_running: int, device_class: str | None | object = EVERY_CLASS,
                  **values: Any) -> int | None:
    """Move the fairest queued run (fairest_queued) to running with values, in one statement; its id, or None when
    no queued run may start now. Safe under concurrent workers: SQLite's write lock covers the statement, and on
    PostgreSQL every claim holds CLAIM_LOCK until its transaction ends (its next statement sees the last claim)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
    query = (update(Run).where(Run.id == fairest_queued(default_running, device_class), Run.status == RunStatus.queued)
             .values(status=RunStatus.running, **values).returning(Run.id))
    return session.execute(query.execution_options(synchronize_session=False)).scalar_one_or_none()


def queued_order(session: Session, default_running: int) -> list[int]:
    """The queued runs in the order they would start if nothing else changed (what fairest_queued picks, then the
    next, …), for the queue page and tests; owners at their quota are left out."""
    order: list[int] = []
    now = utcnow()
    with session.begin_nested() as savepoint:  # pretend-claim each in turn (a microsecond apart), then undo
        while (run_id := claim_fairest(session, default_running,
                                       started_at=now + timedelta(microseconds=len(order)))) is not None:
            order.append(run_id)
        savepoint.rollback()
    return order


def pass_message(session: Session, claimed_id: int, named_id: int) -> None:
    """A message named named_id started claimed_id: the named run, if still queued, now counts on the claimed run's
    message (or lack of one: its dispatched_to), so messages and queued runs stay one to one."""
    if claimed_id == named_id:
        return
    holder = session.scalar(select(Run.dispatched_to).where(Run.id == claimed_id))
    transition(session, named_id, [RunStatus.queued], dispatched_to=holder)


def park(session: Session, named_id: int) -> int | None:
    """A message that started nothing was used up: mark a queued run holding a message as holding none (the named
    one, else the newest); its id, or None when no queued run holds one."""
    holds = (Run.dispatched_to.is_not(None), Run.dispatched_to != PARKED)
    if transition(session, named_id, [RunStatus.queued], *holds, dispatched_to=PARKED):
        return named_id
    # Of the named run's class: messages and queued runs stay one to one within each class's queue.
    same_class = of_class(device_class_of(session, named_id))
    newest = session.scalar(select(Run.id).where(Run.status == RunStatus.queued, *holds, *same_class)
                            .order_by(Run.id.desc()))
    if newest is not None and transition(session, newest, [RunStatus.queued], *holds, dispatched_to=PARKED):
        return newest
    return None


def parked(session: Session, owner_id: int | None = None, *, every_owner: bool = False) -> Sequence[Run]:
    """Parked queued runs (of one owner, or of every owner), oldest first."""
    query = select(Run).where(Run.status == RunStatus.queued, Run.dispatched_to == PARKED)
    if not every_owner:
        query = query.where(Run.owner_id.is_(None) if owner_id is None else Run.owner_id == owner_id)
    return session.scalars(query.order_by(Run.id)).all()


def running_count(session: Session, owner_id: int | None) -> int:
    """How many of one owner's runs are running."""
    owner = Run.owner_id.is_(None) if owner_id is None else Run.owner_id == owner_id
    return session.scalar(select(func.count()).select_from(Run).where(owner, Run.status == RunStatus.running)) or 0
