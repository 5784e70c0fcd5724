"""Queue latency: POST /api/runs → the trainer process is running, on the tiny model, with a live web app and worker.

Run: .venv/bin/python benchmarks/queue_latency.py [--repeats 5] [--idle 5] [--token TOKEN]
Starts its own studio (SQLite in a temporary folder, an embedded Redis, one worker, uvicorn) as
`lorastudio up` does, registers a tiny random model and a chat dataset, then POSTs short runs one after
another. For each it reads the run's timeline and reports, from the moment the POST was sent:
  claimed   the worker claimed the run (Celery delivery + claim),
  spawned   the trainer process wrote its first event, before importing torch ("trainer process started"),
  imported  the trainer finished importing torch/transformers and began loading the tokenizer,
  ready     the Trainer began training (the "started" event); ready - "loading model" is the model load.
The goal (issue 5) is spawned ≤ 1 s; model load is reported separately. Each POST waits --idle seconds after
the previous run ended (--idle 0: a POST that arrives while the previous run is being concluded). Timeline times
are when the worker stored each event, so they include the job runner's read and database write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                      {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
        for a in range(6) for b in range(4)]
PHASES = ("claimed", "spawned", "imported", "model_load", "ready")


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer header once the studio wants one (LORASTUDIO_TOKEN or --token), else nothing."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def spec(dataset_id: int, model: str) -> dict:
    """Two optimiser steps on the tiny model: the run is over quickly, so the next POST finds the worker idle."""
    return {"name": "queue-latency", "method": "lora", "model": {"base_model": model},
            "data": {"dataset_id": dataset_id, "max_seq_length": 64},
            "lora": {"r": 8, "alpha": 16}, "training": {"max_steps": 2, "per_device_batch_size": 4}}


def _epoch(stamp: str) -> float:
    """A timeline created_at (UTC; SQLite drops the zone) as seconds since the epoch."""
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def phases(timeline: list[dict], posted: float) -> dict[str, float]:
    """Seconds from the POST to each phase, read from the run's timeline."""
    def first(kind: str, prefix: str = "") -> float:
        event = next(e for e in timeline if e["kind"] == kind and e["message"].startswith(prefix))
        return _epoch(event["created_at"]) - posted

    out = {"claimed": first("started"), "spawned": first("log", "trainer process started"),
           "imported": first("log", "loading tokenizer"), "ready": first("training")}
    out["model_load"] = out["ready"] - first("log", "loading model")
    return out


def one_run(http: httpx.Client, body: dict) -> dict[str, float]:
    """POST one run, wait for it to end, and time its phases."""
    posted = time.time()
    response = http.post("/api/runs", json=body)
    response.raise_for_status()
    run_id = response.json()["id"]
    deadline = time.monotonic() + 300
    while http.get(f"/api/runs/{run_id}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not finish within 300 s")
        time.sleep(0.2)
    result = phases(http.get(f"/api/runs/{run_id}/timeline").json(), posted)
    return result | {"post_s": float(response.elapsed.total_seconds())}


def setup(http: httpx.Client, model_dir: Path) -> dict:
    """Register the tiny model and upload the chat dataset; returns a run spec for them."""
    model = http.post("/api/models", json={"name": f"tiny-{time.time_ns()}", "ref": str(model_dir)})
    model.raise_for_status()
    body = "\n".join(json.dumps(r) for r in ROWS).encode()
    dataset = http.post("/api/datasets", files={"file": ("chat.jsonl", body)}, data={"name": "chat"})
    dataset.raise_for_status()
    return spec(dataset.json()["id"], model.json()["name"])


def report(results: list[dict[str, float]]) -> str:
    """Median and max of each phase."""
    lines = [f"{'phase (s after POST)':<22}{'median':>8}{'max':>8}"]
    for name in ("post_s", *PHASES):
        values = [r[name] for r in results]
        lines.append(f"{name:<22}{statistics.median(values):>8.2f}{max(values):>8.2f}")
    spawned = statistics.median(r["spawned"] for r in results)
    lines.append(f"POST → trainer process started: median {spawned:.2f} s (goal ≤ 1 s); "
                 f"model load median {statistics.median(r['model_load'] for r in results):.2f} s")
    return "\n".join(lines)


def studio(data_dir: Path):  # noqa: ANN201 - (Stack, url, admin token)
    """Database, Redis, one worker and the web app, as `lorastudio up` starts them, and an admin's API token."""
    from app.core import schema
    from app.stack import Stack, free_port, wait_for_http, web_argv, worker_argv

    url = f"sqlite:///{data_dir / 'studio.db'}"
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(data_dir), "DATABASE_URL": url, "PYTHONUNBUFFERED": "1",
           "LORASTUDIO_QUEUE": f"latency-{os.getpid()}"}
    schema.upgrade(url)
    from app.core.config import Settings
    from app.core.resources import Resources
    from tests.support.accounts import create_account

    admin = create_account(Resources(Settings(data_dir=data_dir, DATABASE_URL=url)), "admin", admin=True)
    stack = Stack()
    env["REDIS_URL"] = stack.start_redis(data_dir, env)
    stack.start("worker", worker_argv(env["LORASTUDIO_QUEUE"]), env, data_dir / "worker.log")
    port = free_port()
    web = stack.start("web", web_argv("127.0.0.1", port), env, data_dir / "web.log")
    wait_for_http(f"http://127.0.0.1:{port}", web)
    return stack, f"http://127.0.0.1:{port}", admin.token


def main() -> None:
    """Start a studio, warm it up with one run, then time --repeats runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds between a run's end and the next POST")
    parser.add_argument("--token", default=os.environ.get("LORASTUDIO_TOKEN"),
                        help="bearer token (default: an admin made in the benchmark's own database)")
    args = parser.parse_args()
    from tests.support.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        model_dir = build_tiny_model(data_dir / "tiny-model")
        stack, url, admin_token = studio(data_dir)
        try:
            with httpx.Client(base_url=url, timeout=60, headers=auth_headers(args.token or admin_token)) as http:
                body = setup(http, model_dir)
                one_run(http, body)  # warm-up: the worker's first task imports the job runner, the OS caches torch
                results = []
                for i in range(args.repeats):
                    time.sleep(args.idle)
                    results.append(one_run(http, body))
                    print(f"  run {i + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in results[-1].items()), flush=True)
            print(report(results))
        finally:
            stack.stop(grace_s=10)


if __name__ == "__main__":
    main()
