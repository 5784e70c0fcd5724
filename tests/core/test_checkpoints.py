"""Checkpoints in the blob store: stored whole or not at all, the newest only, exported as written, each one's
adapter kept as its step's; a later attempt replaces the metric points after its checkpoint without reusing their
seqs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core import blobs
from app.core.db import utcnow
from app.core.generation.adapter_hash import adapter_files, adapter_sha256
from app.core.models import Artifact, Blob, MetricPoint, RunStatus, TimelineEntry
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import runs as runs_repo
from app.core.services import checkpoints
from app.core.services.runs import claim_run, record_metrics
from tests.support.rows import insert_run
from worker.planning.reports import Metric


def _run(session, status: RunStatus = RunStatus.running, attempts: int = 1) -> int:
    return insert_run(session, status=status, attempts=attempts, heartbeat_at=utcnow())


def _folder(root: Path, step: int, files: dict[str, bytes]) -> Path:
    """A checkpoint folder as the trainer writes it: files plus a manifest of their sha256."""
    folder = root / f"step-{step:06d}"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listing = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()}
    (folder / "checkpoint.json").write_text(json.dumps({"format": 1, "step": step, "files": listing}))
    return folder


def test_newest_checkpoint_replaces_the_previous_and_exports_byte_for_byte(session, tmp_path: Path) -> None:
    run_id = _run(session)
    shared = b'{"r": 8}'  # identical in both checkpoints: one blob, kept while the newer one uses it
    first = _folder(tmp_path, 10, {"adapter_config.json": shared, "rng.json": b"[1]", "optimizer.safetensors": b"a"})
    assert checkpoints.store(session, run_id, 1, 10, first) == []
    first_blobs = {a.name: a.blob_id for a in artifacts_repo.of_kind(session, run_id, "checkpoint")}
    second = _folder(tmp_path, 20, {"adapter_config.json": shared, "rng.json": b"[2]", "optimizer.safetensors": b"b"})
    dropped = checkpoints.store(session, run_id, 1, 20, second)
    assert sorted(dropped) == sorted(first_blobs.values())
    assert checkpoints.collect(session, dropped) == 3  # step 10's rng, optimizer and manifest; not the shared one
    assert session.get(Blob, first_blobs["step-000010/adapter_config.json"]) is not None
    names = [a.name for a in artifacts_repo.of_kind(session, run_id, "checkpoint")]
    assert names == [f"step-000020/{n}" for n in ("adapter_config.json", "checkpoint.json", "optimizer.safetensors",
                                                  "rng.json")]
    assert runs_repo.artifacts(session, run_id) == []  # checkpoints are no adapter download
    folder = checkpoints.export(session, run_id, tmp_path / "export")
    assert folder == tmp_path / "export" / "step-000020"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {p.name: p.read_bytes() for p in second.iterdir()}
    events = session.scalars(select(TimelineEntry.kind).where(TimelineEntry.run_id == run_id)).all()
    assert events == ["checkpoint", "checkpoint"]


def test_half_written_checkpoint_or_another_attempt_changes_nothing(session, tmp_path: Path) -> None:
    run_id = _run(session)
    checkpoints.store(session, run_id, 1, 10, _folder(tmp_path, 10, {"rng.json": b"[1]"}))
    damaged = _folder(tmp_path, 20, {"rng.json": b"[2]", "optimizer.safetensors": b"x"})
    (damaged / "optimizer.safetensors").unlink()  # as if taken while being pruned
    for attempt, folder, error in ((1, damaged, checkpoints.IncompleteCheckpoint),
                                   (2, _folder(tmp_path / "b", 20, {"rng.json": b"[2]"}), checkpoints.NotThisAttempt)):
        nested = session.begin_nested()
        with pytest.raises(error):
            checkpoints.store(session, run_id, attempt, 20, folder)
        nested.rollback()
    assert checkpoints.export(session, run_id, tmp_path / "out") == tmp_path / "out" / "step-000010"


def test_later_attempt_resumes_from_the_checkpoint_and_replaces_later_points(session, tmp_path: Path) -> None:
    run_id = _run(session)
    record_metrics(session, run_id, [Metric(step=seq, loss=1.0 / seq) for seq in range(1, 31)])
    checkpoints.store(session, run_id, 1, 20, _folder(tmp_path, 20, {"rng.json": b"[1]"}))
    runs_repo.transition(session, run_id, [RunStatus.running], status=RunStatus.queued)  # as the janitor does
    claim = claim_run(session, run_id, worker="w2@host")
    assert claim is not None and (claim.attempt, claim.resume_step) == (2, 20)
    steps = session.scalars(select(MetricPoint.step).where(MetricPoint.run_id == run_id)).all()
    assert sorted(steps) == list(range(1, 21))
    assert runs_repo.last_seq(session, run_id) == 30  # the replaced points' seqs are not given out again
    resumed = session.scalars(select(TimelineEntry).where(TimelineEntry.run_id == run_id,
                                                          TimelineEntry.kind == "resumed")).one()
    assert resumed.message == "Resumed from step 20 on worker w2@host (attempt 2)."
    assert resumed.data["replaced_points"] == 10
    assert claim_run(session, run_id, worker="w1@host") is None  # a redelivered message finds it taken


def test_first_attempt_starts_fresh(session) -> None:
    run_id = _run(session, status=RunStatus.queued, attempts=0)
    claim = claim_run(session, run_id, worker="w1@host")
    assert claim is not None and (claim.attempt, claim.resume_step) == (1, None)
    assert session.scalars(select(Artifact).where(Artifact.run_id == run_id)).all() == []


def test_each_checkpoints_adapter_outlives_the_checkpoint_and_is_served_as_its_step(session, tmp_path: Path) -> None:
    run_id = _run(session)
    for step in (10, 20):
        files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": f"w{step}".encode(),
                 "optimizer.safetensors": f"o{step}".encode()}
        checkpoints.collect(session, checkpoints.store(session, run_id, 1, step, _folder(tmp_path, step, files)))
    checkpoints.collect(session, checkpoints.drop(session, run_id))  # the run ended well: checkpoints go
    assert artifacts_repo.of_kind(session, run_id, "checkpoint") == []
    assert artifacts_repo.stored_steps(session, run_id) == [10, 20]
    step_10 = adapter_files(session, run_id, 10)
    assert [f.name for f in step_10] == ["adapter_config.json", "adapter_model.safetensors"]
    assert b"".join(blobs.iter_blob(session, step_10[1].blob_id)) == b"w10"  # its blob outlived the checkpoint
    assert adapter_sha256(session, run_id, 10) != adapter_sha256(session, run_id, 20)
    assert adapter_sha256(session, run_id, 30) is None


def test_an_attempt_that_starts_over_drops_the_lost_attempts_later_steps(session, tmp_path: Path) -> None:
    run_id = _run(session)
    weights = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"first"}
    checkpoints.store(session, run_id, 1, 10, _folder(tmp_path, 10, weights))
    checkpoints.store(session, run_id, 1, 20, _folder(tmp_path, 20, weights))
    artifacts_repo.delete_all(session, artifacts_repo.of_kind(session, run_id, "checkpoint"))  # none to resume from
    runs_repo.transition(session, run_id, [RunStatus.running], status=RunStatus.queued)
    assert claim_run(session, run_id, worker="w2@host").resume_step is None
    assert artifacts_repo.stored_steps(session, run_id) == []
    again = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"second"}
    checkpoints.store(session, run_id, 2, 10, _folder(tmp_path / "b", 10, again))
    checkpoints.store(session, run_id, 2, 10, _folder(tmp_path / "c", 10, again))  # the same step, stored again
    assert artifacts_repo.stored_steps(session, run_id) == [10]
