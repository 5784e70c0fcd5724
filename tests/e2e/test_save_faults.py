"""A full disk or a database error while a checkpoint or the adapter is saved: the run fails with the reason,
and the checkpoint stored before is still whole and loads. Real faults: the worker's work folder is a small
tmpfs that the test fills up, and a trigger makes the database itself refuse the write."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from sqlalchemy import text
from transformers import AutoModelForCausalLM

from app.core.db import session_scope
from app.core.repositories import artifacts as artifacts_repo
from app.core.services import checkpoints
from tests.support.fleet import Fleet, make_fleet, wait_for
from tests.support.requirements import require
from worker.trainer import checkpoint, state_codec

pytestmark = pytest.mark.e2e
REFUSAL = "injected fault: the database refused the write"


@pytest.fixture(scope="module")
def fleet(settings, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One worker whose work folder is a 64 MiB tmpfs (skipped where this process may not mount one)."""
    root = tmp_path_factory.mktemp("faults")
    work = root / "work"
    work.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(work)], capture_output=True)
    require(mounted.returncode == 0, "cannot mount a tmpfs to fill up: run the tests as root (in a container, "
            f"with CAP_SYS_ADMIN): {mounted.stderr.decode().strip()}")
    fleet = make_fleet(settings, root)
    try:
        fleet.start("w1")
        fleet.wait_ready("w1")
        fleet.register(tiny_model_dir)
        yield fleet
    finally:
        fleet.stop()
        subprocess.run(["umount", "-l", str(work)], check=False)


@pytest.fixture(autouse=True)
def _leave_the_worker_free(fleet: Fleet) -> Iterator[None]:
    yield
    fleet.cancel_unfinished()


def _stored_step(fleet: Fleet, run_id: int) -> int | None:
    with session_scope(fleet.resources.session_factory) as session:
        latest = artifacts_repo.latest_checkpoint(session, run_id)
    return latest[0] if latest else None


@contextlib.contextmanager
def _disk_full(fleet: Fleet, run_id: int) -> Iterator[None]:
    """Pause the trainer, let the worker store what it has, fill the work folder up, then let it go on."""
    work = fleet.settings.work_dir
    (pid,) = fleet.trainer_pids(run_id)
    os.kill(pid, signal.SIGSTOP)
    # Nothing in flight: a stored folder is deleted, which would free room for the next checkpoint.
    wait_for(lambda: not [*work.glob("run-*/storing/*"), *work.glob("run-*/out/checkpoints/step-*")], 30,
             lambda: "the worker kept a checkpoint folder")
    filler = work / f"filler-{uuid.uuid4().hex[:6]}"
    try:
        try:
            _fill_up(filler)
        finally:
            os.kill(pid, signal.SIGCONT)
        yield
    finally:
        filler.unlink()


def _fill_up(path: Path) -> None:
    """Write zeros to path until its filesystem is full (megabytes, then pages for the remainder)."""
    with path.open("wb", buffering=0) as f:
        for block in (b"\0" * (1 << 20), b"\0" * 4096):
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


@contextlib.contextmanager
def _refused_inserts(fleet: Fleet, run_id: int, condition: str) -> Iterator[None]:
    """The database raises on inserting this run's artifacts that meet condition (SQL over NEW)."""
    name = f"refuse_{run_id}_{uuid.uuid4().hex[:6]}"
    engine = fleet.resources.engine
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        create = [f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.run_id = {run_id} "
                  f"AND {condition} THEN RAISE EXCEPTION '{REFUSAL}'; END IF; RETURN NEW; END $$",
                  f"CREATE TRIGGER {name} BEFORE INSERT ON artifacts FOR EACH ROW EXECUTE FUNCTION {name}()"]
        drop = [f"DROP TRIGGER {name} ON artifacts", f"DROP FUNCTION {name}()"]
    else:
        create = [f"CREATE TRIGGER {name} BEFORE INSERT ON artifacts WHEN NEW.run_id = {run_id} AND {condition} "
                  f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"]
        drop = [f"DROP TRIGGER {name}"]
    with engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


def _assert_checkpoint_loads(fleet: Fleet, run_id: int, dest: Path, tiny_model_dir: Path) -> int:
    """Export the run's stored checkpoint, check it is whole, and load each part; returns its step."""
    with session_scope(fleet.resources.session_factory) as session:
        folder = checkpoints.export(session, run_id, dest)
    assert folder is not None, "the previous checkpoint is gone"
    manifest = checkpoint.verify(folder)  # every file matches its sha256
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(torch.isfinite(p).all() and p.abs().sum() > 0 for p in lora_b), "untrained adapter"
    assert state_codec.load(folder, "optimizer")["state"] and state_codec.load(folder, "rng")["cpu"].numel()
    assert state_codec.load(folder, "scheduler")["last_epoch"] == manifest["step"]
    return manifest["step"]


def _wait_failed(fleet: Fleet, run_id: int):
    run = fleet.wait_status(run_id, {"succeeded", "failed", "cancelled"}, timeout=120)
    assert run.status == "failed", (run.status, fleet.logs())
    return run


def test_full_disk_while_writing_a_checkpoint(fleet, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_id = fleet.create_run(fleet.spec(3000, save_steps=100))
    wait_for(lambda: _stored_step(fleet, run_id), 120, lambda: f"no checkpoint stored:\n{fleet.logs()}")
    with _disk_full(fleet, run_id):
        run = _wait_failed(fleet, run_id)
    assert run.error_code == "checkpoint_save_failed", run.error_message
    assert "No space left on device" in run.error_message
    assert run.error_advice and "disk space" in run.error_advice
    step = _assert_checkpoint_loads(fleet, run_id, tmp_path, tiny_model_dir)
    assert f"checkpoint of step {step + 100} " in run.error_message  # the next one failed; this one is intact


def test_full_disk_while_writing_the_adapter(fleet, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_id = fleet.create_run(fleet.spec(400, save_steps=200))  # one checkpoint, then 200 steps to fill the disk
    wait_for(lambda: _stored_step(fleet, run_id), 120, lambda: f"no checkpoint stored:\n{fleet.logs()}")
    with _disk_full(fleet, run_id):
        run = _wait_failed(fleet, run_id)
    assert run.error_code == "adapter_save_failed", run.error_message
    assert "No space left on device" in run.error_message
    assert _assert_checkpoint_loads(fleet, run_id, tmp_path, tiny_model_dir) == 200


def test_database_error_while_storing_a_checkpoint(fleet, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_id = fleet.create_run(fleet.spec(3000, save_steps=100))
    # Only a second checkpoint is refused (one of another step is stored already): the first goes in whole.
    other_step = ("NEW.kind = 'checkpoint' AND EXISTS (SELECT 1 FROM artifacts a WHERE a.run_id = NEW.run_id "
                  "AND a.kind = 'checkpoint' AND substr(a.name, 1, 11) <> substr(NEW.name, 1, 11))")
    with _refused_inserts(fleet, run_id, other_step):
        run = _wait_failed(fleet, run_id)
    assert run.error_code == "checkpoint_save_failed" and REFUSAL in run.error_message, run.error_message
    assert "checkpoint of step 200 " in run.error_message
    assert _assert_checkpoint_loads(fleet, run_id, tmp_path, tiny_model_dir) == 100
    assert not fleet.trainer_pids(run_id), "the trainer went on after its run failed"


def test_database_error_while_storing_the_adapter(fleet, tiny_model_dir: Path, tmp_path: Path) -> None:
    run_id = fleet.create_run(fleet.spec(300, save_steps=100))
    with _refused_inserts(fleet, run_id, "NEW.kind = 'adapter'"):
        run = _wait_failed(fleet, run_id)
    assert run.error_code == "adapter_save_failed" and REFUSAL in run.error_message, run.error_message
    assert _assert_checkpoint_loads(fleet, run_id, tmp_path, tiny_model_dir) == 200
    assert not [a for a in fleet.events(run_id) if a.kind == "succeeded"]
