"""Enqueue background jobs by name, only once the unit of work that created their rows has committed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Sender = Callable[[str, dict[str, Any]], None]
_sender: Sender | None = None


def configure_sender(sender: Sender | None) -> None:
    """Set the function that hands a job to the queue (the web app passes a Celery send_task)."""
    global _sender
    _sender = sender


def enqueue(session: Session, task_name: str, **kwargs: Any) -> None:
    """Send task_name(**kwargs) after session commits; nothing is sent if it rolls back."""
    pending: list[tuple[str, dict[str, Any]]] = session.info.setdefault("pending_jobs", [])
    if not pending:
        event.listen(session, "after_commit", _send_pending, once=True)
        event.listen(session, "after_rollback", _drop_pending, once=True)
    pending.append((task_name, kwargs))


def _send_pending(session: Session) -> None:
    for task_name, kwargs in session.info.pop("pending_jobs", []):
        if _sender is None:
            log.warning("no job sender configured; %s%s stays queued in the database", task_name, kwargs)
            continue
        try:
            _sender(task_name, kwargs)
        except Exception:  # the run is committed as queued; a later dispatch picks it up
            log.exception("could not send %s%s to the queue", task_name, kwargs)


def _drop_pending(session: Session) -> None:
    session.info.pop("pending_jobs", None)
