"""Redis stopped and started again while a run trains: training goes on, points are kept, the API answers 503
for new runs while Redis is away, and a queued run whose message the restart lost is sent again and trains."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.core.config import Settings
from app.stack import Stack, free_port, redis_server_binary, studio_env, wait_for_http, web_argv, worker_argv
from tests.support.accounts import Account
from tests.support.studio import CHAT_ROWS, LiveStudio, run_spec

pytestmark = pytest.mark.e2e


def _redis(port: int, folder: Path) -> subprocess.Popen:
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(folder)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                return proc
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError("redis did not start")


@pytest.fixture
def studio_with_own_redis(settings: Settings, admin: Account,
                          tmp_path: Path) -> Iterator[tuple[LiveStudio, int, list]]:
    """A web app and a worker on the test database, but on a Redis of their own that the test can stop."""
    port = free_port()
    redis_procs = [_redis(port, tmp_path)]
    env = studio_env(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0",
                     LORASTUDIO_QUEUE=f"outage-{uuid.uuid4().hex[:6]}", PYTHONUNBUFFERED="1")
    stack, web_port = Stack(), free_port()
    try:
        stack.start("worker", worker_argv(env["LORASTUDIO_QUEUE"]), env, tmp_path / "worker.log")
        web = stack.start("web", web_argv("127.0.0.1", web_port), env, tmp_path / "web.log")
        url = f"http://127.0.0.1:{web_port}"
        wait_for_http(url, web)
        with httpx.Client(base_url=url, timeout=60, headers=admin.headers) as http:
            studio = LiveStudio(url=url, http=http, worker_log=tmp_path / "worker.log", token=admin.token)
            yield studio, port, redis_procs
    finally:
        stack.stop(grace_s=10)
        for proc in redis_procs:
            proc.kill()


def test_redis_restart_mid_run(studio_with_own_redis, tiny_model_dir: Path, tmp_path: Path) -> None:
    studio, port, redis_procs = studio_with_own_redis
    http = studio.http
    model = http.post("/api/models", json={"name": f"outage-{uuid.uuid4().hex[:6]}", "ref": str(tiny_model_dir)})
    body = "\n".join(json.dumps(r) for r in CHAT_ROWS).encode()
    dataset_id = http.post("/api/datasets", files={"file": ("chat.jsonl", body)}).json()["id"]
    spec = run_spec(dataset_id, model.json()["name"], "lora", 200)
    long_run = http.post("/api/runs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while http.get(f"/api/runs/{long_run}").json()["current_step"] < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    waiting_run = http.post("/api/runs", json=run_spec(dataset_id, model.json()["name"], "lora", 4)).json()["id"]
    assert http.get(f"/api/runs/{waiting_run}").json()["status"] == "queued"  # one slot: it waits in Redis

    redis_procs[0].kill()
    redis_procs[0].wait()
    refused = http.post("/api/runs", json=spec)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_unavailable"
    assert http.get("/readyz").status_code == 503
    step_when_down = http.get(f"/api/runs/{long_run}").json()["current_step"]
    time.sleep(4)
    assert http.get(f"/api/runs/{long_run}").json()["current_step"] > step_when_down, "training stopped"

    redis_procs.append(_redis(port, tmp_path))  # a new, empty Redis: the waiting run's message is gone
    assert studio.wait_for(long_run, {"succeeded", "failed"}, timeout=240)["status"] == "succeeded"
    points = http.get(f"/api/runs/{long_run}/metrics").json()
    steps = [p["step"] for p in points if "loss" in p["values"]]
    assert steps == list(range(1, 201)), "metric points were lost or duplicated across the outage"
    waited = studio.wait_for(waiting_run, {"succeeded", "failed"}, timeout=180)
    assert waited["status"] == "succeeded" and waited["attempts"] == 1
    assert http.post("/api/runs", json=run_spec(dataset_id, model.json()["name"], "lora", 1)).status_code == 201
