"""The training job kind: a claimed attempt at a run, trained by a `python -m worker.trainer` child."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from app.core.db import session_scope
from app.core.models import RunStatus
from app.core.resources import Resources
from app.core.services import runs as run_service
from worker.heartbeat import Heartbeat
from worker.jobs.child import ChildProcess
from worker.jobs.inputs import export_training_inputs
from worker.jobs.outcome import Outcome, Seen, decide
from worker.jobs.recorder import RunRecorder
from worker.jobs.runner import JobRunner
from worker.planning.reports import Report

log = logging.getLogger(__name__)


class TrainingJob:
    """Training's part of the job runner: its inputs, its reports recorded, its outcome stored."""

    def __init__(self, res: Resources, claim: run_service.Claim, heartbeat: Heartbeat, workdir: Path) -> None:
        self.res, self.claim, self.heartbeat = res, claim, heartbeat
        self.recorder = RunRecorder(res, heartbeat, workdir)
        self.gpus = 1  # the runner lends this many GPUs to the child (the spec's resources.gpus, once prepared)

    def prepare(self, workdir: Path) -> list[str]:
        with session_scope(self.res.session_factory) as session:
            files = export_training_inputs(session, self.heartbeat.run_id, workdir)
        self.gpus = files.processes
        self.recorder.publish_status()
        return files.argv()

    def handle(self, reports: list[Report]) -> None:
        self.recorder.record(reports)

    def abandoned(self) -> bool:
        return self.recorder.lost or self.recorder.away or self.recorder.failure is not None

    def cancel_requested(self) -> bool:
        return self.heartbeat.cancel_requested

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        recorder = self.recorder
        if recorder.away:  # nothing can be written: the run stays running there until the janitor requeues it
            child.wait()
            log.error("run %s: attempt %s stopped while the database was unreachable; it resumes from its newest "
                      "checkpoint once the database is back", self.heartbeat.run_id, self.claim.attempt)
            return "abandoned"
        seen = Seen(returncode=child.wait(), finished=recorder.finished, error=recorder.error, lost=recorder.lost,
                    failure=recorder.failure, stderr_tail=child.stderr_tail(),
                    cancel_requested=not recorder.lost and recorder.cancel_requested(),
                    output_saved=(workdir / "out" / "adapter").is_dir())
        outcome = decide(seen)
        if outcome.status == "superseded":
            log.warning("run %s went to another attempt; attempt %s stopped and recorded nothing more",
                        self.heartbeat.run_id, self.claim.attempt)
            return outcome.status
        return recorder.finish(outcome, workdir / "out" / "adapter")

    def prepare_failed(self, exc: Exception) -> str:
        error = {"code": "prepare_failed", "message": str(exc)}
        return self.recorder.finish(Outcome(RunStatus.failed.value, error=error))


def train_run(res: Resources, claim: run_service.Claim, run_id: int) -> str:
    """Train one claimed attempt at a run to its end state, beating its heartbeat throughout."""
    workdir = res.settings.work_dir / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    heartbeat = Heartbeat(res.session_factory, run_id, claim.attempt).start()
    try:
        runner = JobRunner(workdir, res.settings.trainer_allocator, res.settings.cancel_grace_s)
        return runner.run(TrainingJob(res, claim, heartbeat, workdir))
    finally:
        heartbeat.stop()
