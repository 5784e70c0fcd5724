"""The lifecycle an evaluation and an export share inside the job runner: reports kept (one Result or Error, the
stage a Log names, done/total from Started and Metric), progress stored at most once a second, a beat every
BEAT_EVERY_S whose answer says whether a cancel was asked for or the attempt was handed on, and the end: abandoned,
cancelled, the kind's own success, or failed with the reason. A kind gives its service's calls (the hooks)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.core.errors import StudioError
from app.core.resources import Resources
from worker.jobs.child import ChildProcess
from worker.planning.reports import Error, Log, Metric, Report, Result, Started

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0
BEAT_EVERY_S = 2.0  # as a run's heartbeat: far below Settings.lost_after_s


class WatchedJob:
    """A job whose row beats and records progress; subclasses name it and give the hooks below."""

    what = "job"  # in messages: "evaluation", "export"
    child_name = "The child"  # "The evaluator exited with code …"

    def __init__(self, res: Resources, job_id: int, attempt: int) -> None:
        self.res, self.job_id, self.attempt = res, job_id, attempt
        self.result: Result | None = None
        self.error: Error | None = None
        self.total = 0
        self.done = 0
        self.stage: str | None = None
        self._recorded_at = 0.0
        self.state = "go"  # the service's beat answer: go | cancel | lost
        self._beat_at = time.monotonic()

    # The hooks: each runs in its own unit of work.
    def store_progress(self, session: Session) -> None:
        raise NotImplementedError

    def store_beat(self, session: Session) -> str:
        raise NotImplementedError

    def store_cancelled(self, session: Session) -> None:
        raise NotImplementedError

    def store_failure(self, session: Session, why: str) -> None:
        raise NotImplementedError

    def succeed(self, workdir: Path, data: dict) -> str:
        """Store what the Result names; the end state."""
        raise NotImplementedError

    def handle(self, reports: list[Report]) -> None:
        for report in reports:
            if isinstance(report, Result):
                self.result = report
            elif isinstance(report, Error):
                self.error = report
            elif isinstance(report, Started):
                self.total = report.total_steps or 0
                self._record_progress(force=True)
            elif isinstance(report, Metric):
                self.done = report.step
                self._record_progress(force=self.done >= self.total)
            elif isinstance(report, Log):
                self.stage = report.message
                self._record_progress(force=False)

    def _record_progress(self, force: bool) -> None:
        """Store progress at most once a second (and always at the start and the end)."""
        now = time.monotonic()
        if not force and now - self._recorded_at < PROGRESS_EVERY_S:
            return
        self._recorded_at = now
        try:
            with session_scope(self.res.session_factory) as session:
                self.store_progress(session)
        except Exception:  # progress is a courtesy: the outcome is stored by conclude
            log.warning("could not record %s %s's progress", self.what, self.job_id, exc_info=True)

    def _beat(self) -> str:
        """Beat at most every BEAT_EVERY_S; a database that does not answer keeps the last answer (the janitor
        waits lost_after_s before it takes the job back)."""
        now = time.monotonic()
        if self.state == "go" and now - self._beat_at >= BEAT_EVERY_S:
            self._beat_at = now
            try:
                with session_scope(self.res.session_factory) as session:
                    self.state = self.store_beat(session)
            except Exception:
                log.warning("could not beat for %s %s", self.what, self.job_id, exc_info=True)
        return self.state

    def abandoned(self) -> bool:
        return self._beat() == "lost"  # reaped as lost and handed on (or its row gone): this attempt stores nothing

    def cancel_requested(self) -> bool:
        return self._beat() == "cancel"

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        returncode = child.wait()
        if self.state == "lost":
            return "abandoned"
        if self.state == "cancel":
            with session_scope(self.res.session_factory) as session:
                self.store_cancelled(session)
            return "cancelled"
        if self.result is not None and returncode == 0:
            return self.succeed(workdir, self.result.data)
        why = self.error.message if self.error else f"{self.child_name} exited with code {returncode}: " \
            f"{child.stderr_tail()}"
        return self.fail(why)

    def prepare_failed(self, exc: Exception) -> str:
        return self.fail(exc.message if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}")

    def fail(self, why: str) -> str:
        """Any failure leaves the row "failed" with its reason, and nothing of the job's output stored."""
        with session_scope(self.res.session_factory) as session:
            self.store_failure(session, why)
        return "failed"
