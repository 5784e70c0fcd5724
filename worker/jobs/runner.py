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

from worker.jobs import workdir as folders
from worker.jobs.child import ChildProcess, child_env
from worker.jobs.gpu_slots import check_count, lent_gpus
from worker.planning.reports import Report

log = logging.getLogger(__name__)
# How long after the child's exit its stdout may stay open (the last reports still draining) before whatever holds
# it is taken for a leftover helper process and ended.
ORPHAN_GRACE_S = 5.0


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
        self.orphan_grace_s = ORPHAN_GRACE_S

    def run(self, job: JobKind) -> str:
        """Prepare, spawn, supervise and conclude; returns the job's end state."""
        # The folder is held while the job runs, so a worker starting meanwhile does not sweep it (folders.sweep).
        try:
            lock = folders.hold(self.workdir)
        except OSError as exc:  # a full or read-only disk must not leave the job "running" either
            log.exception("making the work folder %s failed", self.workdir)
            return job.prepare_failed(exc)
        try:
            return self._run(job)
        finally:
            folders.release(lock)

    def _run(self, job: JobKind) -> str:
        try:
            try:
                env = child_env(os.environ, self.allocator, parent_pid=os.getpid())  # a missing allocator fails here
                argv = job.prepare(self.workdir)
                # How many GPUs the job's child needs at once (a training run's resources.gpus; 1 for the rest).
                gpus = getattr(job, "gpus", 1)
                check_count(gpus)
            except Exception as exc:  # whatever went wrong must not leave the job "running"
                log.exception("preparing job in %s failed", self.workdir)
                return job.prepare_failed(exc)
            with lent_gpus(env, gpus) as env:  # on a GPU worker: this job's own GPUs, for as long as its child runs
                child = ChildProcess(argv, env, stderr=self.workdir / "child.log").start()
                self.supervise(child, job)
            return job.conclude(child, self.workdir)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def supervise(self, child: ChildProcess, job: JobKind) -> None:
        """Hand the child's reports to the job until it exits, stopping it when the job says so."""
        cancel_sent_at: float | None = None
        exited_at: float | None = None
        killed = False
        while True:
            job.handle(child.next_batch(timeout=self.poll_s))
            now = time.monotonic()
            if child.returncode is not None and not child.stream_ended:
                exited_at = exited_at or now
                self._end_orphans(child, now - exited_at)
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

    def _end_orphans(self, child: ChildProcess, since_exit: float) -> None:
        """The child exited but its stream is still open: something it started holds it (a helper process left
        behind). Its process group is killed after orphan_grace_s; a holder that left the group is given up on
        after twice that, so no leftover can hold the job, and with it the worker's slot, for ever."""
        if since_exit > 2 * self.orphan_grace_s:
            log.warning("the child's stdout is still open %.0f s after it exited (a process it started holds it); "
                        "concluding without it", since_exit)
            child.abandon_stream()
        elif since_exit > self.orphan_grace_s:
            child.kill()  # the group outlives its leader while members remain
