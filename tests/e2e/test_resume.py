"""A worker killed with -9 mid-run: another worker resumes the run from its last checkpoint and ends with the
adapter an uninterrupted run produces; a run that kills its worker every time fails after a bounded number of
attempts. Real workers, Redis, database and training on the tiny model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.core import blobs
from app.core.db import session_scope
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import runs as runs_repo
from tests.support.fleet import Fleet, make_fleet, wait_for

pytestmark = pytest.mark.e2e
STEPS, SAVE_STEPS = 400, 100  # ~10 ms a step: the kill lands well before the end


@pytest.fixture
def fleets(settings, tmp_path: Path):
    """Makes fleets on the test database; stops their workers at the end."""
    made: list[Fleet] = []

    def make(name: str, **env: str) -> Fleet:
        made.append(make_fleet(settings, tmp_path / name, **env))
        return made[-1]

    yield make
    for fleet in made:
        fleet.stop()


def _points(fleet: Fleet, run_id: int) -> list[tuple[int, int, dict]]:
    with session_scope(fleet.resources.session_factory) as session:
        return [(p.seq, p.step, p.values) for p in runs_repo.metric_points(session, run_id)]


def _adapter(fleet: Fleet, run_id: int, dest: Path) -> dict[str, torch.Tensor]:
    with session_scope(fleet.resources.session_factory) as session:
        weights = next(a for a in runs_repo.artifacts(session, run_id) if a.name == "adapter_model.safetensors")
        blobs.export_to_file(session, weights.blob_id, dest)
    return load_file(dest)


def _checkpoint_step(fleet: Fleet, run_id: int) -> int | None:
    with session_scope(fleet.resources.session_factory) as session:
        latest = artifacts_repo.latest_checkpoint(session, run_id)
    return latest[0] if latest else None


def test_killed_worker_run_resumes_on_another_and_matches_an_uninterrupted_run(
    fleets, tiny_model_dir: Path, tmp_path: Path
) -> None:
    fleet = fleets("resume")  # the studio's own lost_after_s and janitor interval: the 75 s are the defaults'
    fleet.start("w1"), fleet.start("w2")
    fleet.wait_ready("w1", "w2")
    fleet.register(tiny_model_dir)
    spec = fleet.spec(STEPS, save_steps=SAVE_STEPS)
    victim, twin = fleet.create_run(spec), fleet.create_run(spec)  # same spec and seed; the twin is not disturbed
    # Kill a few steps past a stored checkpoint, so that some points have to be replaced.
    wait_for(lambda: (_checkpoint_step(fleet, victim) or STEPS) + 5 <= fleet.run(victim).current_step, 180,
             lambda: f"no checkpoint stored for run {victim}:\n{fleet.logs()}", every=0.1)
    holder = fleet.run(victim).worker.split("@")[0]
    survivor = ({"w1", "w2"} - {holder}).pop()
    checkpoint, before = _checkpoint_step(fleet, victim), _points(fleet, victim)
    assert fleet.trainer_pids(victim), "the victim's trainer process was not found"
    killed_at = fleet.kill(holder)
    wait_for(lambda: not fleet.trainer_pids(victim), 10, lambda: "the trainer outlived its killed worker")
    wait_for(lambda: fleet.events(victim, "resumed"), 90, lambda: f"run {victim} not resumed:\n{fleet.logs()}")
    resumed_after = time.time() - killed_at
    run = fleet.wait_status(victim, {"succeeded", "failed"})
    assert run.status == "succeeded", (run.error_code, run.error_message, fleet.logs())
    assert fleet.wait_status(twin, {"succeeded", "failed"}).status == "succeeded"
    print(f"\nkilled at step {before[-1][1]} (checkpoint {checkpoint}); resumed on {survivor} {resumed_after:.1f} s on")
    assert resumed_after < 75
    assert run.worker.startswith(f"{survivor}@") and run.attempts == 2
    resumed = fleet.events(victim, "resumed")[0]
    assert resumed.data["from_step"] == checkpoint and resumed.data["replaced_points"] >= 5
    assert f"Resumed from step {checkpoint} on worker {survivor}@" in resumed.message

    after = _points(fleet, victim)
    assert [p for p in after if p[1] <= checkpoint] == [p for p in before if p[1] <= checkpoint]  # kept as they were
    steps = [step for _, step, values in after if "loss" in values]
    assert steps == list(range(1, STEPS + 1)), steps  # each step once: the replaced ones are not duplicated
    seqs = [seq for seq, _, _ in after]
    assert seqs == sorted(set(seqs)) and min(s for s, st, _ in after if st > checkpoint) > before[-1][0]
    left, right = _adapter(fleet, victim, tmp_path / "a.safetensors"), _adapter(fleet, twin, tmp_path / "b.safetensors")
    diff = max((left[k] - right[k]).abs().max().item() for k in left)
    print(f"adapter max |diff| vs the uninterrupted twin: {diff:.2e}")
    assert left.keys() == right.keys() and diff < 1e-4
    assert _checkpoint_step(fleet, victim) is None  # dropped once the run succeeded
    assert not fleet.trainer_pids(victim) and not fleet.trainer_pids(twin)


def test_run_that_keeps_killing_its_worker_fails_after_max_attempts(fleets, tiny_model_dir: Path) -> None:
    fleet = fleets("crash", LORASTUDIO_LOST_AFTER_S="8", LORASTUDIO_MAX_ATTEMPTS="2")
    fleet.start("w1")
    fleet.wait_ready("w1")
    fleet.register(tiny_model_dir)
    run_id = fleet.create_run(fleet.spec(5000))
    for attempt, name in ((1, "w1"), (2, "w2")):
        # As an out-of-memory kill would: the worker dies as soon as it starts the run.
        wait_for(lambda a=attempt: fleet.run(run_id).attempts == a and fleet.run(run_id).status == "running", 120,
                 lambda a=attempt: f"attempt {a} of run {run_id} did not start:\n{fleet.logs()}")
        fleet.kill(name)
        fleet.start("w2" if name == "w1" else "w3")
    run = fleet.wait_status(run_id, {"failed", "succeeded"}, timeout=60)
    assert run.status == "failed" and run.error_code == "worker_lost" and run.attempts == 2
    assert "on each of 2 attempts" in run.error_message
    kinds = [e.kind for e in fleet.events(run_id) if e.kind in ("started", "requeued", "resumed", "failed")]
    assert kinds == ["started", "requeued", "resumed", "failed"], kinds
    wait_for(lambda: not fleet.trainer_pids(run_id), 10, lambda: "a trainer outlived its killed worker")
