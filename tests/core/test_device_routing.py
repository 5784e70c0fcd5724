"""Routing by device class (issue 17, item 3): the classes workers belong to and take, where a run is routed from
the choice and the estimate, and the claim that keeps each class's messages to its own runs — pinned on start, so a
requeue goes back to a worker of the same class. On the real database (SQLite; PostgreSQL with
LORASTUDIO_TEST_DB=postgresql)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import utcnow
from app.core.jobs import queue_for
from app.core.models import Run, RunStatus, User
from app.core.repositories import runs as runs_repo
from app.core.services import runs as run_service
from tests.support.rows import insert_run
from worker.planning import device_classes as dc
from worker.planning.spec import RunSpec

T0 = utcnow() - timedelta(hours=1)


# --- the classes (pure) ---

@pytest.mark.parametrize(("kind", "gb", "expected"), [
    ("cuda", 15.6, "gpu16"),  # a T4 reports a little under its 16 GB label
    ("cuda", 25.4, "gpu24"),  # RTX 4090 / L4 / A10
    ("cuda", 42.4, "gpu40"),  # A100 40 GB
    ("cuda", 85.1, "gpu80"),  # A100 / H100 80 GB
    ("cuda", 150.0, "gpu141"),  # H200
    ("cuda", 4.0, "gpu8"),  # below the smallest rung: the smallest
    ("cpu", 512.0, "cpu"),
])
def test_a_worker_belongs_to_the_largest_rung_its_memory_reaches(kind: str, gb: float, expected: str) -> None:
    assert dc.worker_class(kind, gb) == expected


def test_a_host_of_mixed_gpus_is_described_by_its_smallest() -> None:
    from worker.trainer.device import gpu_summary

    assert gpu_summary([("NVIDIA A10", 22.0), ("NVIDIA A100-SXM4-80GB", 79.2)]) == (
        "NVIDIA A10 + NVIDIA A100-SXM4-80GB", 22.0)  # a job may land on either: it must fit the A10
    assert gpu_summary([("NVIDIA H100 80GB HBM3", 79.19)] * 8) == ("NVIDIA H100 80GB HBM3", 79.2)


def test_the_class_of_a_described_device_reads_its_memory_in_gib() -> None:
    # worker.trainer.device reports GiB: an H100's 79.2 GiB is 85 GB.
    assert dc.class_of({"kind": "cuda", "memory_gb": 79.2}) == "gpu80"
    assert dc.class_of({"kind": "cpu", "memory_gb": 23.4}) == "cpu"


def test_a_gpu_worker_takes_its_class_and_every_smaller_one_a_cpu_worker_only_cpu() -> None:
    assert dc.accepted_classes("gpu24") == ["gpu8", "gpu12", "gpu16", "gpu24"]
    assert dc.accepted_classes("cpu") == ["cpu"]
    assert dc.worker_queues("training", "gpu16") == ["training", "training.gpu8", "training.gpu12", "training.gpu16"]
    assert dc.worker_queues("training", "cpu") == ["training", "training.cpu"]


def test_a_run_goes_to_the_smallest_gpu_with_room_for_its_estimate_and_headroom() -> None:
    assert dc.class_for_memory(20.0) == "gpu24"  # 23 GB with 15 % headroom
    assert dc.class_for_memory(21.5) == "gpu32"  # 24.7 GB: no longer fits a 24 GB card
    assert dc.class_for_memory(70.0) == "gpu94"  # 80.5 GB
    with pytest.raises(dc.Unroutable, match="more than the largest GPU class"):
        dc.class_for_memory(400.0)


def test_route_from_the_choice_and_the_estimate() -> None:
    small, big = 135_000_000, 7_000_000_000
    assert dc.route("auto", small, 3.0) is None  # small bases run anywhere
    assert dc.route("auto", big, 20.0) == "gpu24"  # a 7B base needs a GPU with room for it
    assert dc.route("auto", None, None) is None  # an unknown shape cannot be sized: any worker
    assert dc.route("any", big, 20.0) is None
    assert dc.route("cpu", big, 20.0) == "cpu"  # the person's choice wins
    assert dc.route("gpu80", small, 3.0) == "gpu80"
    assert dc.route("gpu", small, 3.0) == "gpu8"
    with pytest.raises(dc.Unroutable, match="cannot size"):
        dc.route("gpu", None, None)


def test_the_queue_of_a_run_follows_its_class() -> None:
    settings = Settings(queue="training")
    assert queue_for(settings, "runs.execute") == "training"
    assert queue_for(settings, "runs.execute", "gpu80") == "training.gpu80"
    assert queue_for(settings, "datasets.analyze", "gpu80") == "short"  # short jobs have one queue


def test_the_spec_takes_known_classes_only() -> None:
    spec = {"data": {"dataset_id": 1}}
    assert RunSpec.model_validate(spec).resources.device_class == "auto"
    assert RunSpec.model_validate(spec | {"resources": {"device_class": "gpu24"}}).resources.device_class == "gpu24"
    for bad in ("gpu23", "tpu", "GPU24", "gpu"+"9" * 4):
        with pytest.raises(ValidationError, match="device_class"):
            RunSpec.model_validate(spec | {"resources": {"device_class": bad}})
    with pytest.raises(ValueError, match="cpu or one of"):
        dc.check_worker_class("auto")  # a worker is one class, not a choice


# --- the claim (database) ---

@pytest.fixture(autouse=True)
def _only_this_tests_runs(session) -> None:
    """Runs other tests left queued (committed ones, in a shared database) are out of the way, until the rollback."""
    session.execute(update(Run).where(Run.status.in_([RunStatus.queued, RunStatus.running]))
                    .values(status=RunStatus.cancelled))


def _owner(session) -> User:
    user = User(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="x")
    session.add(user)
    session.flush()
    return user


def _queued(session, owner: User, device_class: str | None, start: int) -> int:
    return insert_run(session, status=RunStatus.queued, owner_id=owner.id, device_class=device_class,
                      created_at=T0 + timedelta(seconds=start), dispatched_to="redis-1")


def test_a_message_starts_a_run_of_its_own_class_only(session) -> None:
    owner = _owner(session)
    gpu80 = _queued(session, owner, "gpu80", 0)  # the oldest, but a gpu24 worker's message must not start it
    gpu24 = _queued(session, owner, "gpu24", 1)
    anywhere = _queued(session, owner, None, 2)
    started = run_service.claim_next(session, gpu24, worker="w24@host", worker_class="gpu24")
    assert started is not None and started[0] == gpu24
    assert run_service.claim_next(session, anywhere, worker="w24@host", worker_class="gpu24")[0] == anywhere
    assert session.get(Run, gpu80).status == RunStatus.queued
    # A message of the gpu80 queue (only gpu80 workers and up take it) starts it.
    assert run_service.claim_next(session, gpu80, worker="w80@host", worker_class="gpu80")[0] == gpu80


def test_an_unrouted_run_is_pinned_to_the_class_of_the_worker_that_starts_it(session) -> None:
    owner = _owner(session)
    anywhere = _queued(session, owner, None, 0)
    routed = _queued(session, owner, "gpu24", 1)
    run_service.claim_next(session, anywhere, worker="cpu@host", worker_class="cpu")
    run_service.claim_next(session, routed, worker="w80@host", worker_class="gpu80")
    session.expire_all()
    assert session.get(Run, anywhere).device_class == "cpu"  # its requeue goes to training.cpu
    assert session.get(Run, routed).device_class == "gpu24"  # a routed run keeps its class on a bigger card


def test_a_message_that_starts_nothing_parks_a_run_of_its_own_class(session) -> None:
    limited = User(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="x", max_running_runs=1)
    session.add(limited)
    session.flush()
    insert_run(session, status=RunStatus.running, owner_id=limited.id, device_class="cpu", started_at=T0)  # quota
    cpu_run = _queued(session, limited, "cpu", 0)
    gpu_run = _queued(session, limited, "gpu24", 1)  # newer, of another class
    # A cpu message that starts nothing names a run that is no longer queued (say, cancelled meanwhile):
    gone = _queued(session, limited, "cpu", 2)
    session.execute(update(Run).where(Run.id == gone).values(status=RunStatus.cancelled))
    assert run_service.claim_next(session, gone, worker="cpu@host", worker_class="cpu") is None
    session.expire_all()
    assert session.get(Run, cpu_run).dispatched_to == runs_repo.PARKED  # the cpu queue's token is gone: its run
    assert session.get(Run, gpu_run).dispatched_to == "redis-1"  # the gpu24 run's message is still in its queue


def test_the_queue_page_orders_every_class(session) -> None:
    owner = _owner(session)
    runs = [_queued(session, owner, c, i) for i, c in enumerate(("cpu", None, "gpu80"))]
    assert runs_repo.queued_order(session, 0) == runs
