"""Enqueue background jobs by name, only once the unit of work that created their rows has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Sends one job; returns an id of the broker instance that now holds it (None if unknown).
Sender = Callable[[str, dict[str, Any]], str | None]
OnSent = Callable[[Engine | Connection, str | None], None]
_sender: Sender | None = None
_probe: Callable[[], bool] | None = None


def configure_sender(sender: Sender | None, probe: Callable[[], bool] | None = None) -> None:
    """Set the function that hands a job to the queue (the web app passes a Celery send_task), and a health probe."""
    global _sender, _probe
    _sender, _probe = sender, probe


def broker_available() -> bool:
    """Whether the queue answers now (True when no probe is configured)."""
    return _probe is None or _probe()


def enqueue(session: Session, task_name: str, on_sent: OnSent | None = None, **kwargs: Any) -> None:
    """Send task_name(**kwargs) after session commits; nothing is sent if it rolls back.

    on_sent(bind, broker_id) runs after a successful send, to record where the job went.
    """
    pending: list[tuple[str, dict[str, Any], OnSent | None]] = session.info.setdefault("pending_jobs", [])
    if not pending:
        event.listen(session, "after_commit", _send_pending, once=True)
        event.listen(session, "after_rollback", _drop_pending, once=True)
    pending.append((task_name, kwargs, on_sent))


def send(task_name: str, kwargs: dict[str, Any]) -> str | None:
    """Send a job now (the janitor re-dispatches this way); raises if the broker is unreachable."""
    if _sender is None:
        raise RuntimeError("no job sender configured")
    return _sender(task_name, kwargs)


def _send_pending(session: Session) -> None:
    bind = session.get_bind()
    for task_name, kwargs, on_sent in session.info.pop("pending_jobs", []):
        try:
            broker_id = send(task_name, kwargs)
        except Exception:  # the row is committed; the janitor dispatches it once the broker is back
            log.exception("could not send %s%s to the queue", task_name, kwargs)
            continue
        if on_sent is not None:
            on_sent(bind, broker_id)


def _drop_pending(session: Session) -> None:
    session.info.pop("pending_jobs", None)
