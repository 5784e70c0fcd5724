"""The job runner's loop with a job kind of the test's own: prepare, supervise, relay cancel, conclude, clean up."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.worker.conftest import child_argv
from worker.jobs.child import ChildProcess
from worker.jobs.runner import JobRunner
from worker.planning.reports import Finished, Log, Metric, Report


class FakeJob:
    """Records what the runner did with it; cancels or abandons once the child says it is waiting."""

    def __init__(self, mode: str, cancel: bool = False, abandon: bool = False, broken: bool = False) -> None:
        self.mode, self.cancel, self.abandon, self.broken = mode, cancel, abandon, broken
        self.reports: list[Report] = []
        self.workdir: Path | None = None

    def prepare(self, workdir: Path) -> list[str]:
        self.workdir = workdir
        (workdir / "input.txt").write_text("ready")
        if self.broken:
            raise ValueError("the dataset blob is missing")
        return child_argv(self.mode)

    def handle(self, reports: list[Report]) -> None:
        self.reports += reports

    def waiting(self) -> bool:
        return any(isinstance(r, Log) for r in self.reports)

    def abandoned(self) -> bool:
        return self.abandon and self.waiting()

    def cancel_requested(self) -> bool:
        return self.cancel and self.waiting()

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        assert (workdir / "input.txt").read_text() == "ready"  # the folder lives until the job has concluded
        finished = [r for r in self.reports if isinstance(r, Finished)]
        return f"{finished[-1].status if finished else 'none'}/{child.wait()}"

    def prepare_failed(self, exc: Exception) -> str:
        return f"prepare_failed: {exc}"


@pytest.fixture
def runner(tmp_path: Path) -> JobRunner:
    return JobRunner(tmp_path / "job", allocator="system", cancel_grace_s=1.0, poll_s=0.05)


def test_a_job_runs_to_its_end_and_its_folder_goes(runner: JobRunner) -> None:
    job = FakeJob("quick")
    assert runner.run(job) == "succeeded/0"
    assert [r.step for r in job.reports if isinstance(r, Metric)] == [1, 2]
    assert not job.workdir.exists()


def test_a_cancel_becomes_sigterm_and_a_clean_stop(runner: JobRunner) -> None:
    assert runner.run(FakeJob("wait", cancel=True)) == "cancelled/0"


def test_a_child_deaf_to_sigterm_is_killed_after_the_grace_period(runner: JobRunner) -> None:
    assert runner.run(FakeJob("stubborn", cancel=True)) == "none/-9"


def test_an_abandoned_job_is_killed_at_once(runner: JobRunner) -> None:
    assert runner.run(FakeJob("stubborn", abandon=True)) == "none/-9"


def test_a_grandchild_holding_the_stream_open_does_not_hold_the_job(runner: JobRunner) -> None:
    runner.orphan_grace_s = 0.5
    started = time.monotonic()
    job = FakeJob("orphan")
    assert runner.run(job) == "succeeded/0"  # concluded, not waiting for an end of stream that never comes
    assert time.monotonic() - started < 20
    assert [r.step for r in job.reports if isinstance(r, Metric)] == [1, 2]
    leftovers = subprocess.run(["pgrep", "-f", "import time; time.sleep(300)"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "the grandchild was left running"


def test_a_crash_is_concluded_from_its_exit_code(runner: JobRunner) -> None:
    assert runner.run(FakeJob("crash")) == "none/3"


def test_a_failure_to_prepare_is_the_job_s_to_record(runner: JobRunner) -> None:
    job = FakeJob("quick", broken=True)
    assert runner.run(job) == "prepare_failed: the dataset blob is missing"
    assert not job.workdir.exists()


def test_a_missing_allocator_fails_the_preparation(tmp_path: Path) -> None:
    runner = JobRunner(tmp_path / "job", allocator="no-such-malloc", cancel_grace_s=1.0)
    assert runner.run(FakeJob("quick")).startswith("prepare_failed: Unknown trainer allocator")
