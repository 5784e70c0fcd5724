"""Real Celery workers with a queue and a database of their own, for tests that kill, restart and crowd workers.

Runs are created through app.core.services and app.core.jobs, the path the API takes. The database is the
fleet's own (a SQLite file, or a fresh PostgreSQL database when the session runs on PostgreSQL): every
worker's janitor sweeps its whole database and requeues a lost run to its own queue, so a fleet sharing the
session's database would see its runs taken over by the live studio's worker. So is its Redis: kombu keeps
the unacknowledged messages of every queue of a Redis database in one set, and any worker sweeping it with
a short visibility timeout (the redelivery test's) hands out again the messages of every other test session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from app.core import schema
from app.core.config import Settings
from app.core.db import session_scope
from app.core.models import Run, TimelineEntry
from app.core.repositories import runs as runs_repo
from app.core.resources import Resources
from app.core.services import datasets as dataset_service
from app.core.services import models as model_service
from app.core.services import runs as run_service
from app.stack import ROOT, Stack, lane_queues, studio_env, worker_argv
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.support.processes import trainer_pids
from tests.support.studio import CHAT_ROWS, run_spec
from worker.planning.device_classes import CLASS_ENV
from worker.planning.spec import RunSpec


@dataclass
class Worker:
    """One worker process (it leads a process group; the job runner's children have groups of their own)."""

    name: str
    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        """The worker's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Fleet:
    """Workers started and killed by a test, and the runs it gives them."""

    settings: Settings
    resources: Resources
    env: dict[str, str]
    workers: dict[str, Worker] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    created: list[int] = field(default_factory=list)
    drop_database: Callable[[], None] = lambda: None
    redis: Stack = field(default_factory=Stack)

    def start(self, name: str, concurrency: int = 1, app: str = "worker.celery_app", lanes: str = "training",
              device_class: str | None = None, data_dir: Path | None = None) -> Worker:
        """A worker named name@host (of the Celery app module `app`) taking `lanes` (app.stack.LANES: training,
        short or both), logging to its own file; as a worker of device_class (its queues, as `lorastudio worker
        --device-class` sets them) and with a data folder of its own where given, as on another host."""
        log = self.settings.data_dir / f"{name}.log"
        argv = worker_argv(lane_queues(self.settings, lanes, device_class), concurrency, name)
        argv[argv.index("worker.celery_app")] = app
        env = {**self.env, **({CLASS_ENV: device_class} if device_class else {}),
               **({"LORASTUDIO_DATA_DIR": str(data_dir)} if data_dir else {})}
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.workers[name] = Worker(name, proc, log)
        return self.workers[name]

    def wait_ready(self, *names: str, timeout: float = 90) -> None:
        """Until each named worker consumes from the queue."""
        wait_for(lambda: all(" ready." in self.workers[n].text() for n in names), timeout,
                 lambda: f"workers {names} not ready:\n" + self.logs())

    def kill(self, name: str) -> float:
        """kill -9 a worker's whole process group; returns the wall time (its trainers die with it: PDEATHSIG)."""
        worker = self.workers[name]
        killed_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)
        return killed_at

    def stop(self) -> None:
        """SIGTERM every worker group, SIGKILL what is left after a grace period; then drop the database."""
        self._stop_workers()
        self.redis.stop()
        self.resources.engine.dispose()
        self.drop_database()

    def _stop_workers(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.proc.pid, signal.SIGTERM)
        for worker in self.workers.values():
            try:
                worker.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait(timeout=15)

    def trainer_pids(self, run_id: int) -> list[int]:
        """Pids of this fleet's trainer processes for a run."""
        return trainer_pids(self.settings.work_dir, run_id)

    def logs(self) -> str:
        """The tail of every worker's log."""
        return "\n".join(f"--- {w.name}\n{w.text()[-3000:]}" for w in self.workers.values())

    def register(self, tiny_model_dir: Path) -> dict[str, Any]:
        """The tiny model and a chat dataset, registered once per fleet."""
        data = self.settings.data_dir / "chat.jsonl"
        data.write_text("\n".join(json.dumps(row) for row in CHAT_ROWS))
        with session_scope(self.resources.session_factory) as session:
            model = model_service.register_model(session, f"tiny-{uuid.uuid4().hex[:8]}", str(tiny_model_dir))
            dataset = dataset_service.create_dataset(session, data, "chat.jsonl", name="chat")
            self.objects = {"model": model.name, "dataset_id": dataset.id}
        return self.objects

    def spec(self, max_steps: int, **training: Any) -> dict[str, Any]:
        """The e2e spec for the tiny model, with training overrides."""
        spec = run_spec(self.objects["dataset_id"], self.objects["model"], "lora", max_steps)
        spec["training"].update(training)
        return spec

    def create_run(self, spec: dict[str, Any]) -> int:
        """Queue a run as the API does: stored by the service, sent to this fleet's queue after commit."""
        with session_scope(self.resources.session_factory) as session:  # sends through this fleet's own Redis
            run_id = run_service.create_run(session, RunSpec.model_validate(spec)).id
        self.created.append(run_id)
        return run_id

    def cancel_unfinished(self) -> None:
        """Cancel the runs this fleet was given that have not ended (a failed test must not hold the workers)."""
        with session_scope(self.resources.session_factory) as session:
            for run_id in self.created:
                run = session.get(Run, run_id)
                if run.status in ("queued", "running"):
                    run_service.cancel_run(session, run)

    def run(self, run_id: int) -> Run:
        """A run as the database has it now."""
        with session_scope(self.resources.session_factory) as session:
            return session.get(Run, run_id)

    def events(self, run_id: int, kind: str | None = None) -> list[TimelineEntry]:
        """A run's timeline (of one kind)."""
        with session_scope(self.resources.session_factory) as session:
            return [e for e in runs_repo.timeline(session, run_id) if kind in (None, e.kind)]

    def wait_status(self, run_id: int, statuses: set[str], timeout: float = 240) -> Run:
        """Poll a run until it reaches one of statuses."""
        wait_for(lambda: self.run(run_id).status in statuses, timeout,
                 lambda: f"run {run_id} still {self.run(run_id).status}:\n{self.logs()}")
        return self.run(run_id)


def wait_for(condition: Callable[[], bool], timeout: float, describe: Callable[[], str], every: float = 0.2) -> None:
    """Poll condition until true, or fail with describe()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {describe()}")


def make_fleet(settings: Settings, data_dir: Path, **env: str) -> Fleet:
    """A fleet with its own database, Redis, queue, data folder and LORASTUDIO_* overrides."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url, drop = _own_database(settings, data_dir)
    redis = Stack()
    redis_url = redis.start_redis(data_dir, dict(os.environ))
    fleet_settings = settings.model_copy(update={"queue": f"fleet-{uuid.uuid4().hex[:8]}", "data_dir": data_dir,
                                                 "database_url": url, "redis_url": redis_url})
    base = {**studio_env(fleet_settings, base={}), "PYTHONUNBUFFERED": "1",
            # One math thread per trainer: several trainers share this machine's few cores, and OpenMP threads
            # spinning against each other made a step of the tiny model ~8x slower in CPU time.
            "OMP_NUM_THREADS": "1",
            # Workers that are started and killed by the dozen measure no speed (a test asks for it in env).
            "LORASTUDIO_CALIBRATE": "false"}
    return Fleet(fleet_settings, Resources(fleet_settings), {**os.environ, **base, **env}, drop_database=drop,
                 redis=redis)


def _own_database(settings: Settings, data_dir: Path) -> tuple[str, Callable[[], None]]:
    """A migrated database of the session's kind; returns its URL and how to drop it."""
    if settings.resolved_database_url.startswith("postgresql"):
        url, name = _create_pg_database()
        drop = partial(_drop_pg_database, name)
    else:
        url, drop = f"sqlite:///{data_dir / 'fleet.db'}", lambda: None
    schema.upgrade(url)
    return url, drop
