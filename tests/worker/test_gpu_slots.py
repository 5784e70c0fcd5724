"""One GPU per job on a multi-GPU worker (device counts faked: this machine has none): slots lend distinct device
ids, wait when all are lent, and the job runner gives each child only its own GPU (CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from worker.jobs import gpu_slots
from worker.jobs.child import ChildProcess
from worker.jobs.gpu_slots import GpuSlots, host_gpu_ids
from worker.jobs.runner import JobRunner
from worker.planning.reports import Log, Report

CHILD = ("import os, time\n"
         "from worker.planning.reports import Finished, Log\n"
         "print(Log(message=os.environ.get('CUDA_VISIBLE_DEVICES', 'all')).to_json(), flush=True)\n"
         "time.sleep(1.0)\n"
         "print(Finished(status='succeeded').to_json(), flush=True)\n")


class SeesGpu:
    """A job whose child says which GPUs it sees."""

    def __init__(self) -> None:
        self.reports: list[Report] = []

    def prepare(self, workdir: Path) -> list[str]:
        return [sys.executable, "-c", CHILD]

    def handle(self, reports: list[Report]) -> None:
        self.reports += reports

    def abandoned(self) -> bool:
        return False

    def cancel_requested(self) -> bool:
        return False

    def conclude(self, child: ChildProcess, workdir: Path) -> str:
        child.wait()
        return next(r.message for r in self.reports if isinstance(r, Log))

    def prepare_failed(self, exc: Exception) -> str:
        raise exc


@pytest.fixture
def slots(monkeypatch) -> None:
    monkeypatch.setenv(gpu_slots.SLOTS_ENV, "3,5")
    monkeypatch.setattr(gpu_slots, "_read", False)
    yield
    gpu_slots._read = False


def test_two_jobs_at_once_each_see_only_their_own_gpu(slots, tmp_path: Path) -> None:
    seen: list[str] = []

    def run(n: int) -> None:
        seen.append(JobRunner(tmp_path / f"job-{n}", "system", 1.0, poll_s=0.05).run(SeesGpu()))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert sorted(seen) == ["3", "5"]
    assert JobRunner(tmp_path / "job-2", "system", 1.0, poll_s=0.05).run(SeesGpu()) in {"3", "5"}  # lent back


def test_without_slots_a_child_sees_what_the_worker_sees(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(gpu_slots.SLOTS_ENV, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_slots, "_read", False)
    assert JobRunner(tmp_path / "job", "system", 1.0, poll_s=0.05).run(SeesGpu()) == "all"
    gpu_slots._read = False


def test_a_job_waits_while_every_gpu_is_lent() -> None:
    pool = GpuSlots(["0"])
    got: list[tuple[str, float]] = []
    with pool.take() as [first]:
        waiter = threading.Thread(target=lambda: got.append((pool_take(pool), time.monotonic())))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.3)
        assert got == []  # still waiting
    waiter.join(5)
    assert got and got[0][0] == first and got[0][1] - started >= 0.3


def pool_take(pool: GpuSlots) -> str:
    with pool.take() as [gpu]:
        return gpu


def test_the_hosts_gpus_and_its_own_restriction() -> None:
    assert host_gpu_ids(4, None) == ["0", "1", "2", "3"]
    assert host_gpu_ids(2, "2,3") == ["2", "3"]  # CUDA_VISIBLE_DEVICES kept: slots are its entries
    assert GpuSlots.from_env({"LORASTUDIO_GPU_SLOTS": ""}) is None
    assert GpuSlots.from_env({"LORASTUDIO_GPU_SLOTS": "0, 1"}).free == ["0", "1"]


class SeesGpus(SeesGpu):
    """A job on several GPUs (a run's resources.gpus) that says why it could not start."""

    def __init__(self, gpus: int) -> None:
        super().__init__()
        self.gpus = gpus

    def prepare_failed(self, exc: Exception) -> str:
        return f"failed: {exc}"


def test_a_job_on_two_gpus_is_lent_two_at_once(slots, tmp_path: Path) -> None:
    assert JobRunner(tmp_path / "job", "system", 1.0, poll_s=0.05).run(SeesGpus(2)) == "3,5"


def test_a_job_on_more_gpus_than_the_worker_has_fails_saying_so(slots, tmp_path: Path) -> None:
    said = JobRunner(tmp_path / "job", "system", 1.0, poll_s=0.05).run(SeesGpus(3))
    assert said.startswith("failed: The run asks for 3 GPUs (resources.gpus) but this worker has 2 GPUs"), said


def test_a_job_on_two_gpus_fails_on_a_worker_without_gpu_slots(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(gpu_slots.SLOTS_ENV, raising=False)
    monkeypatch.setattr(gpu_slots, "_read", False)
    said = JobRunner(tmp_path / "job", "system", 1.0, poll_s=0.05).run(SeesGpus(2))
    gpu_slots._read = False
    assert "this worker has no GPU slots" in said and "resources.gpus to at most 1" in said, said


def test_a_two_gpu_job_waits_until_two_are_free() -> None:
    pool = GpuSlots(["0", "1"])
    got: list[list[str]] = []
    with pool.take() as [held]:
        waiter = threading.Thread(target=lambda: got.append(pool_take_two(pool)))
        waiter.start()
        time.sleep(0.3)
        assert got == []  # one of two is free: not enough
    waiter.join(5)
    assert got and sorted(got[0]) == ["0", "1"] and held in got[0]


def pool_take_two(pool: GpuSlots) -> list[str]:
    with pool.take(2) as gpus:
        return gpus
