"""What a training attempt records: its child's reports as database rows and blobs, published to Redis, and its
end state with the adapter."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from app.core import blobs, live
from app.core.db import session_scope
from app.core.models import Artifact, Run, RunStatus
from app.core.repositories import runs as runs_repo
from app.core.resources import Resources
from app.core.services import checkpoints
from app.core.services import runs as run_service
from app.core.services import samples as sample_service
from worker.heartbeat import Heartbeat
from worker.jobs.outage import DatabaseAway, T, retrying
from worker.jobs.outcome import Outcome
from worker.planning.reports import Checkpoint, Error, Finished, Log, Metric, Report, Samples, Started

log = logging.getLogger(__name__)


class RunRecorder:
    """Records one attempt at a run; `lost`, `away` and `failure` say when nothing more of it may be written.

    Every write is one unit of work, tried again while the database is unreachable (worker.jobs.outage): the
    child keeps training meanwhile and its reports wait, in order, in memory, for up to Settings.db_outage_s.
    """

    def __init__(self, res: Resources, heartbeat: Heartbeat, scratch: Path) -> None:
        self.res, self.heartbeat, self.scratch = res, heartbeat, scratch
        self.run_id, self.attempt = heartbeat.run_id, heartbeat.attempt
        self.failure: dict[str, Any] | None = None  # storing a checkpoint failed: the run ends with it
        self.finished: Finished | None = None
        self.error: Error | None = None
        self.away = False  # the database stayed unreachable past db_outage_s: the run resumes elsewhere later
        self.last_seq: int | None = None  # the seq of the newest point this attempt knows it stored

    @property
    def lost(self) -> bool:
        """The run went to another attempt (its heartbeat found it so, or storing a checkpoint did)."""
        return self.heartbeat.lost

    def record(self, reports: list[Report]) -> None:
        """Record a batch in order; metric points are written in one unit of work up to each checkpoint."""
        if self.lost or self.failure or self.away:
            return
        points: list[Metric] = []
        for report in reports:
            if isinstance(report, Metric):
                points.append(report)
            elif isinstance(report, Checkpoint):
                self._metrics(points)  # the points up to the checkpoint go first
                points = []
                self._checkpoint(report)
            elif isinstance(report, Started | Log):
                self._retrying(partial(self._report, report), "recording a report")
            elif isinstance(report, Samples):
                self._retrying(partial(self._samples, report), f"recording the samples of step {report.step}")
            elif isinstance(report, Finished):
                self.finished = report
            elif isinstance(report, Error):
                self.error = report
        self._metrics(points)

    def _retrying(self, work: Callable[[], T], what: str) -> T | None:
        """work() through a database outage; None, with `away` set, if the database stays away too long."""
        try:
            return retrying(work, self.res.settings.db_outage_s, f"run {self.run_id}: {what}",
                            give_up=lambda: self.lost)
        except DatabaseAway:
            log.error("run %s: the database stayed unreachable; attempt %s stops and leaves the run to be resumed",
                      self.run_id, self.attempt, exc_info=True)
            self.away = True
            return None

    def _report(self, report: Started | Log) -> None:
        with session_scope(self.res.session_factory) as session:
            run_service.record_report(session, self.run_id, report)

    def _samples(self, report: Samples) -> None:
        with session_scope(self.res.session_factory) as session:
            sample_service.record_samples(session, self.run_id, report)

    def _metrics(self, points: list[Metric]) -> None:
        """Write points (committed first, so SSE history never misses a published point), then publish."""
        if not points or self.lost or self.away:
            return
        tries = [0]

        def write() -> list[dict[str, Any]]:
            with session_scope(self.res.session_factory) as session:
                # A connection cut during the commit leaves it unknown whether the batch was stored: look first.
                rows = self._stored(session, points) if tries[0] else None
                tries[0] += 1
                rows = rows or run_service.record_metrics(session, self.run_id, points)
            self.last_seq = rows[-1].seq  # committed: the next batch's doubt starts after it
            return [live.metric_update(row) for row in rows]

        for update in self._retrying(write, f"writing {len(points)} metric points") or []:
            self.publish(update)

    def _stored(self, session, points: list[Metric]) -> list | None:  # noqa: ANN001
        """The rows of this batch if an earlier try stored it after all (its points follow this attempt's last)."""
        rows = [row for row in runs_repo.metric_points(session, self.run_id, after_seq=self.last_seq or 0)
                if row.step >= points[0].step]
        return rows if [row.step for row in rows] == [p.step for p in points] else None

    def _checkpoint(self, report: Checkpoint) -> None:
        """Move a checkpoint folder out of the trainer's reach and store it; a failure ends the run."""
        step, folder = report.step, self.scratch / "storing" / Path(report.path).name
        try:
            folder.parent.mkdir(exist_ok=True)
            Path(report.path).rename(folder)  # the trainer prunes its older folders on its own; this one is ours
        except OSError:
            log.info("run %s: checkpoint of step %s was pruned before it could be stored", self.run_id, step)
            return
        try:  # tried again whole after a cut connection: storing the same step twice keeps only the newer copy
            dropped = self._retrying(partial(self._store_checkpoint, step, folder), f"storing checkpoint {step}")
        except checkpoints.IncompleteCheckpoint as exc:  # taken while being pruned: a newer one exists
            log.info("run %s: skipped a checkpoint: %s", self.run_id, exc)
            return
        except checkpoints.NotThisAttempt:
            self.heartbeat.lost = True
            return
        except Exception as exc:
            log.exception("run %s: storing the checkpoint of step %s failed", self.run_id, step)
            self.failure = {"code": "checkpoint_save_failed", "message": f"Storing the checkpoint of step {step} "
                            f"failed ({type(exc).__name__}: {exc}); the run stopped there. Its previous "
                            "checkpoint, if any, is kept whole."}
            return
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if dropped is not None:
            self.collect(dropped)

    def _store_checkpoint(self, step: int, folder: Path) -> list[int]:
        with session_scope(self.res.session_factory) as session:
            return checkpoints.store(session, self.run_id, self.attempt, step, folder)

    def collect(self, blob_ids: list[int]) -> None:
        """Delete the blobs only dropped checkpoints used (best effort: a leftover only costs space)."""
        try:
            with session_scope(self.res.session_factory) as session:
                checkpoints.collect(session, blob_ids)
        except Exception:
            log.warning("run %s: could not delete unused checkpoint blobs %s", self.run_id, blob_ids, exc_info=True)

    def cancel_requested(self) -> bool:
        """The run's cancel flag as the database holds it now."""
        def read() -> bool:
            with session_scope(self.res.session_factory) as session:
                run = session.get(Run, self.run_id)
                return bool(run and run.cancel_requested)

        return bool(self._retrying(read, "reading the cancel flag"))

    def finish(self, outcome: Outcome, adapter_dir: Path | None = None) -> str:
        """The end state, with the adapter when the outcome says so; checkpoints go once a run has ended well.

        Returns "abandoned" when the database stayed unreachable: the run, still running there, is resumed
        from its newest checkpoint once the janitor finds its heartbeat stopped.
        """
        if self.away:
            return "abandoned"
        status, tries = RunStatus(outcome.status), [0]

        def store() -> list[int]:
            tries[0] += 1
            return self._finish(outcome, adapter_dir, again=tries[0] > 1)

        try:
            dropped = self._retrying(store, f"storing its end ({status.value})")
        except Exception as exc:
            if not outcome.store_output:
                raise
            log.exception("run %s: storing the adapter failed", self.run_id)
            return self.finish(Outcome("failed", error={
                "code": "adapter_save_failed", "message": f"Storing the adapter failed ({type(exc).__name__}: "
                f"{exc}). The run's newest checkpoint is kept whole."}), adapter_dir)
        if dropped is None:
            return "abandoned"
        self.collect(dropped)
        self.publish_status()
        return status.value

    def _finish(self, outcome: Outcome, adapter_dir: Path | None, again: bool) -> list[int]:
        status = RunStatus(outcome.status)
        final = outcome.final.model_dump() if outcome.final else None
        with session_scope(self.res.session_factory) as session:
            if again and not self._still_mine(session):  # an earlier try was stored after all (its reply was cut)
                return []
            if outcome.store_output and adapter_dir is not None:
                self._store_adapter(session, adapter_dir)
            dropped = checkpoints.drop(session, self.run_id) if status != RunStatus.failed else []
            run_service.finish_run(session, self.run_id, status, final=final, error=outcome.error,
                                   attempt=self.attempt)
            return dropped

    def _still_mine(self, session) -> bool:  # noqa: ANN001
        run = session.get(Run, self.run_id)
        return run is not None and run.status == RunStatus.running and run.attempts == self.attempt

    def _store_adapter(self, session, adapter_dir: Path) -> None:  # noqa: ANN001
        paths = sorted(p for p in adapter_dir.rglob("*") if p.is_file())
        # put_files: large files bound for an object store go up before any row is written.
        for path, blob in zip(paths, blobs.put_files(session, paths, "application/octet-stream"), strict=True):
            name = path.relative_to(adapter_dir).as_posix()
            session.add(Artifact(run_id=self.run_id, kind="adapter", name=name, blob_id=blob.id, size=blob.size))

    def publish_status(self) -> None:
        """Tell live viewers the run's state (best effort: a page reload reads it from the database anyway)."""
        try:
            with session_scope(self.res.session_factory) as session:
                update = live.status_update(session.get(Run, self.run_id))
        except Exception:
            log.warning("run %s: could not read its state to publish it", self.run_id, exc_info=True)
            return
        self.publish(update)

    def publish(self, update: dict[str, Any]) -> None:
        """Send one live update (best effort: the database already holds what it says)."""
        try:
            self.res.redis.publish(live.run_channel(self.run_id), live.encode(update))
        except Exception:
            log.warning("could not publish to Redis for run %s", self.run_id, exc_info=True)
