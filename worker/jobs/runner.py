"""The loop every job kind shares: prepare its child, spawn it, read its reports, relay a cancel, conclude.

A job kind says what is particular to it (JobKind); the runner owns the order of things and the process.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Protocol

from worker.jobs.child import ChildProcess, child_env
from worker.planning.reports import Report

log = logging.getLogger(__name__)


class JobKind(Protocol):
    """What one kind of job (training, and later generation, evaluation, export) adds to the runner."""

    def prepare(self, workdir: Path) -> list[str]:
        """Write the child's inputs under workdir; its argv (worker.jobs.child.module_argv)."""

    def handle(self, reports: list[Report]) -> None:
        """Record a batch of the child's reports."""

    def abandoned(self) -> bool:
        """True once nothing more of this attempt counts (it was handed on, or recording failed): kill the child."""

    def cancel_requested(self) -> bool:
        """True once a person asked the job to stop: the child gets SIGTERM, then SIGKILL after the grace period."""

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        """Record the end state once the child has exited; returns it."""

    def prepare_failed(self, exc: Exception) -> str:
        """Record that the inputs could not be prepared (a broken dataset, a missing model); returns the state."""


class JobRunner:
    """Runs one job of any kind in its own work folder, removed afterwards."""

    def __init__(self, workdir: Path, allocator: str, cancel_grace_s: float, poll_s: float = 0.2) -> None:
        self.workdir, self.allocator = workdir, allocator
        self.cancel_grace_s, self.poll_s = cancel_grace_s, poll_s

    def run(self, job: JobKind) -> str:
        """Prepare, spawn, supervise and conclude; returns the job's end state."""
        try:
            try:
                self.workdir.mkdir(parents=True, exist_ok=True)
                env = child_env(os.environ, self.allocator, parent_pid=os.getpid())  # a missing allocator fails here
                argv = job.prepare(self.workdir)
            except Exception as exc:  # whatever went wrong must not leave the job "running"
                log.exception("preparing job in %s failed", self.workdir)
                return job.prepare_failed(exc)
            child = ChildProcess(argv, env, stderr=self.workdir / "child.log").start()
            self.supervise(child, job)
            return job.conclude(child, self.workdir)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def supervise(self, child: ChildProcess, job: JobKind) -> None:
        """Hand the child's reports to the job until it exits, stopping it when the job says so."""
        cancel_sent_at: float | None = None
        killed = False
        while True:
            job.handle(child.next_batch(timeout=self.poll_s))
            now = time.monotonic()
            if job.abandoned() and not killed:
                killed = True
                child.kill()
            # The job keeps beating after SIGTERM: the child may take a while to save its output so far.
            if cancel_sent_at is None and job.cancel_requested():
                cancel_sent_at = now
                child.terminate()
            if cancel_sent_at is not None and now - cancel_sent_at > self.cancel_grace_s:
                child.kill()
            if child.exited:
                job.handle(child.next_batch(timeout=0))
                return
