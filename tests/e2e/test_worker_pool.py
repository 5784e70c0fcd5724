"""A training worker never forks pool processes (docs/ARCHITECTURE.md, "Workers never fork"): its slots are
threads, and each job's work is a trainer process the job runner spawns. Under Celery's prefork pool a process
forked while the worker's own threads ran could block for ever on a lock one of them held, and the worker then
ran everything on its other slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fleet import Fleet, make_fleet, wait_for

pytestmark = pytest.mark.e2e
LONG_RUN = 100_000  # steps: far longer than the test; cancelled at its end


def _children(pid: int) -> set[int]:
    """The pids whose parent is pid."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture
def fleet(settings, tmp_path: Path, tiny_model_dir: Path):
    made = make_fleet(settings, tmp_path / "pool")
    made.register(tiny_model_dir)
    yield made
    made.cancel_unfinished()
    made.stop()


def test_a_two_slot_worker_has_no_pool_processes_and_runs_two_jobs_at_once(fleet: Fleet) -> None:
    worker = fleet.start("w", concurrency=2)
    fleet.wait_ready("w")
    assert _children(worker.proc.pid) == set()  # prefork would have two pool processes here
    runs = [fleet.create_run(fleet.spec(LONG_RUN)) for _ in range(2)]
    wait_for(lambda: all(fleet.run(r).current_step > 0 for r in runs), 180,
             lambda: f"runs {[(r, fleet.run(r).status) for r in runs]} not both stepping:\n{fleet.logs()}")
    trainers = {pid for r in runs for pid in fleet.trainer_pids(r)}
    assert len(trainers) == 2
    assert _children(worker.proc.pid) == trainers  # each slot's job is a child of the worker itself
