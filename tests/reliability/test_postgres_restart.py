"""PostgreSQL stopped and started again while a run trains: the trainer goes on, the worker keeps its reports
and writes them once the database is back, the run succeeds as the same attempt with every metric point 1..N
exactly once, its timeline notes the outage, and the web app answers again at once.

On a PostgreSQL cluster of the test's own (tests/support/private_postgres.py): the suite's shared server is
never stopped. Real web app, Celery worker, Redis and trainer on the tiny model.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core import schema
from app.core.config import Settings
from app.core.resources import Resources
from app.stack import Stack, free_port, wait_for_http, web_argv
from tests.support.accounts import create_account
from tests.support.fleet import Fleet, wait_for
from tests.support.private_postgres import PrivatePostgres, usable
from tests.support.requirements import require

pytestmark = pytest.mark.e2e
STEPS, SAVE_STEPS = 400, 150  # a point a step (10-70 ms each here): the outage lands mid-run, checkpoints around it
OUTAGE_S = 5  # two missed heartbeats, far below lost_after_s: the janitor must leave the run alone


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    """A running cluster of this test's own, migrated."""
    why = usable()
    require(why is None, why or "")
    server = PrivatePostgres.create()
    try:
        server.start()
        schema.upgrade(server.url)
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fleet(settings: Settings, postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Fleet]:
    """A worker and a web app on the private cluster, with a Redis and a queue of their own."""
    redis = Stack()
    redis_url = redis.start_redis(tmp_path, dict(os.environ))
    own = settings.model_copy(update={"queue": f"pg-restart-{uuid.uuid4().hex[:8]}", "data_dir": tmp_path,
                                      "database_url": postgres.url, "redis_url": redis_url})
    env = {**os.environ, "DATABASE_URL": postgres.url, "REDIS_URL": redis_url, "LORASTUDIO_DATA_DIR": str(tmp_path),
           "LORASTUDIO_QUEUE": own.queue, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "LORASTUDIO_CALIBRATE": "false"}
    fleet = Fleet(own, Resources(own), env, redis=redis)
    try:
        yield fleet
    finally:
        fleet.stop()


def test_postgres_restart_mid_run_loses_no_point(fleet: Fleet, postgres: PrivatePostgres, tiny_model_dir: Path,
                                                 tmp_path: Path) -> None:
    admin = create_account(fleet.resources, "admin", admin=True)
    fleet.start("w1")
    web, port = Stack(), free_port()
    web_proc = web.start("web", web_argv("127.0.0.1", port, access_log=False), fleet.env, tmp_path / "web.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url, web_proc)
        fleet.wait_ready("w1")
        fleet.register(tiny_model_dir)
        run_id = fleet.create_run(fleet.spec(STEPS, save_steps=SAVE_STEPS))
        with httpx.Client(base_url=url, headers=admin.headers, timeout=30) as http:
            assert http.get(f"/api/runs/{run_id}").status_code == 200  # the web app holds pooled connections now
            wait_for(lambda: fleet.run(run_id).current_step >= 30, 120,
                     lambda: f"run {run_id} did not get going:\n{fleet.logs()}", every=0.1)
            fleet.resources.engine.dispose()  # the test's own connections would be cut too
            postgres.stop()  # fast: every session is cut, as a restart does
            stopped_at = time.monotonic()
            time.sleep(OUTAGE_S)  # the trainer goes on meanwhile (on a fast machine it may even finish)
            postgres.start()
            print(f"\nPostgreSQL away for {time.monotonic() - stopped_at:.1f} s")
            # The first request after the restart gets a live connection (pool_pre_ping), not a 500.
            assert http.get(f"/api/runs/{run_id}").status_code == 200
            run = fleet.wait_status(run_id, {"succeeded", "failed", "cancelled"}, timeout=180)
            assert run.status == "succeeded", (run.error_code, run.error_message, fleet.logs())
            assert run.attempts == 1, "the janitor took the run from its live worker"
            points = http.get(f"/api/runs/{run_id}/metrics").json()
        steps = [p["step"] for p in points if "loss" in p["values"]]
        assert run.final["steps"] == STEPS
        assert steps == list(range(1, STEPS + 1)), "metric points were lost or duplicated across the restart"
        seqs = [p["seq"] for p in points]
        assert seqs == sorted(set(seqs)), "seqs repeat or go back: a live viewer would skip or repeat points"
        outage = fleet.events(run_id, "database_outage")
        assert len(outage) == 1 and outage[0].data["seconds"] >= OUTAGE_S - 2, [e.message for e in outage]
        assert not fleet.events(run_id, "resumed")
    finally:
        web.stop(grace_s=10)
