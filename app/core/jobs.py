"""Enqueue background jobs by name, only once the unit of work that created their rows has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app.core.config import Settings
from worker.planning.device_classes import queue_name

log = logging.getLogger(__name__)

# Jobs of minutes at most (the dataset doctor): they go to the short queue, which a worker slot of its own consumes,
# so they never wait behind a training run. Every other task is training, evaluations and exports included: they
# load a model's weights for minutes, the device a run needs, and must not hold the short lane's one slot.
SHORT_TASKS = frozenset({"datasets.analyze"})

# Where a session's jobs go: the session factory puts the process's sender in every session's info
# (app.core.resources.Resources.session_factory), so a unit of work sends through the resource it was opened with.
SENDER_KEY = "job_sender"
OnSent = Callable[[Engine | Connection, str | None], None]


class Sender(Protocol):
    """Sends one job by name; returns an id of the broker instance that now holds it (None if unknown)."""

    def __call__(self, task_name: str, kwargs: dict[str, Any], device_class: str | None = None) -> str | None: ...

    def available(self) -> bool:
        """Whether the queue answers now."""


def queue_for(settings: Settings, task_name: str, device_class: str | None = None) -> str:
    """The Celery queue task_name is sent to: the short queue for SHORT_TASKS, else the training queue of the
    device class (worker.planning.device_classes; None: the plain training queue every training worker takes)."""
    return settings.resolved_short_queue if task_name in SHORT_TASKS else queue_name(settings.queue, device_class)


def sender_of(session: Session) -> Sender:
    """The job sender of the session's factory; an error naming the cause where it has none."""
    sender = session.info.get(SENDER_KEY)
    if sender is None:
        raise RuntimeError("this session's factory has no job sender (build it with Resources.session_factory)")
    return sender


def broker_available(session: Session) -> bool:
    """Whether the session's queue answers now."""
    return sender_of(session).available()


def enqueue(session: Session, task_name: str, on_sent: OnSent | None = None, *, device_class: str | None = None,
            **kwargs: Any) -> None:
    """Send task_name(**kwargs) after session commits, to the queue of device_class (training tasks); nothing is
    sent if it rolls back.

    on_sent(bind, broker_id) runs after a successful send, to record where the job went.
    """
    pending: list[tuple[str, dict[str, Any], OnSent | None, str | None]] = session.info.setdefault("pending_jobs", [])
    # Listening for good, once per session: a once=True listener stays registered after it fired and a second
    # listen of the same function is ignored, so a session's second commit sent nothing.
    if not event.contains(session, "after_commit", _send_pending):
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append((task_name, kwargs, on_sent, device_class))


def send(session: Session, task_name: str, kwargs: dict[str, Any], device_class: str | None = None) -> str | None:
    """Send a job now, through the session's sender (the janitor re-dispatches this way); raises if the broker is
    unreachable."""
    return sender_of(session)(task_name, kwargs, device_class)


def _send_pending(session: Session) -> None:
    # SQLAlchemy fires after_commit for a released savepoint too: the unit of work has not committed yet.
    if session.get_nested_transaction() is not None:
        return
    bind = session.get_bind()
    for task_name, kwargs, on_sent, device_class in session.info.pop("pending_jobs", []):
        try:
            broker_id = send(session, task_name, kwargs, device_class)
        except Exception:  # the row is committed; the janitor dispatches it once the broker is back
            log.exception("could not send %s%s to the queue", task_name, kwargs)
            continue
        if on_sent is not None:
            on_sent(bind, broker_id)


def _drop_pending(session: Session) -> None:
    # A savepoint rolled back (a unique-key race, a refused garbage collection) leaves the unit of work's jobs due.
    if session.get_nested_transaction() is None:
        session.info.pop("pending_jobs", None)
