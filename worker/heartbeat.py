"""The heartbeat of one attempt at a run, from a thread of its own."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from app.core.db import session_scope, utcnow
from app.core.repositories import runs as runs_repo
from app.core.services.runs import add_to_timeline

log = logging.getLogger(__name__)
INTERVAL_S = 2.0


class Heartbeat:
    """Beats every INTERVAL_S while the job runner works, and brings news back.

    On its own thread so that nothing the runner does (storing a large checkpoint, say) makes a live run
    look dead to the janitor. `cancel_requested` mirrors the run's cancel flag; `lost` turns true once the
    run is no longer this attempt's (the janitor gave it to another worker after a long silence, e.g. while
    the database was unreachable from here): the runner must then stop its trainer and write nothing more.
    The first beat after failed ones notes the outage on the run's timeline.
    """

    def __init__(self, factory: sessionmaker[Session], run_id: int, attempt: int) -> None:
        self.factory, self.run_id, self.attempt = factory, run_id, attempt
        self.cancel_requested = False
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, daemon=True, name=f"heartbeat-run-{run_id}")

    def start(self) -> Heartbeat:
        """Beat now, then every INTERVAL_S until stop()."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (the run has ended, or this attempt gave it up)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def beat(self, failing_since: datetime | None = None) -> None:
        """Record that the run is alive, and read its cancel flag, in one unit of work (noting an outage that
        began at failing_since, the first failed beat)."""
        with session_scope(self.factory) as session:
            cancel = runs_repo.beat(session, self.run_id, self.attempt)
            if cancel is not None and failing_since is not None:
                seconds = round((utcnow() - failing_since).total_seconds())
                add_to_timeline(session, self.run_id, "database_outage", f"The database was unreachable from the "
                                f"worker for about {seconds} s (from {failing_since:%H:%M:%S} UTC); training went on, "
                                "its reports held by the worker until the database was back.",
                                seconds=seconds, since=failing_since.isoformat())
        if cancel is None:
            self.lost = True
        else:
            self.cancel_requested = cancel

    def _beat_forever(self) -> None:
        failing_since: datetime | None = None
        while not self.lost and not self._stop.is_set():
            try:
                self.beat(failing_since)
                failing_since = None
            except Exception:  # the database may be away for a moment; the janitor allows many missed beats
                failing_since = failing_since or utcnow()
                log.warning("heartbeat of run %s failed", self.run_id, exc_info=True)
            self._stop.wait(INTERVAL_S)
