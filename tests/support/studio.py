"""A live studio for end-to-end and browser tests: uvicorn, a real Celery training worker and a worker of short jobs
(the dataset doctor) as child processes, as `lorastudio up` starts them.

Registered as a pytest plugin by tests/conftest.py, so e2e and browser tests share one studio per session.
`live_studio.http` is signed in as the test session's admin, and so is every `lorastudio` CLI child process
(LORASTUDIO_TOKEN is set while the studio runs); browsers log in with `username` and `password`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.stack import (
    GENERATION_READY,
    Stack,
    free_port,
    generation_argv,
    lane_argv,
    studio_env,
    wait_for_http,
    web_argv,
    worker_argv,
)
from tests.support.accounts import Account


@dataclass
class LiveStudio:
    """Where the running studio answers, and its log files."""

    url: str
    http: httpx.Client
    worker_log: Path
    username: str = ""
    password: str = ""
    token: str = ""
    short_worker_log: Path | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        """The Authorization header `http` sends, for other clients (an SSE stream, a raw httpx call)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def wait_for(self, run_id: int, statuses: set[str], timeout: float = 240) -> dict:
        """Poll a run until it reaches one of statuses."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/api/runs/{run_id}").json()
            if run["status"] in statuses:
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s; worker log:\n"
                             + self.worker_log.read_text()[-4000:])


@pytest.fixture(scope="session")
def live_studio(settings: Settings, admin: Account) -> Iterator[LiveStudio]:
    """Web app + a training worker (two task slots) + a worker of short jobs (one slot) + the generation service on
    the test database and the real Redis, signed in as admin. The workers do not calibrate their speed (seconds of
    CPU no test here needs); the generation service loads a base only when first asked."""
    env = studio_env(settings, LORASTUDIO_CANCEL_GRACE_S=str(settings.cancel_grace_s), PYTHONUNBUFFERED="1",
                     LORASTUDIO_CALIBRATE="false")
    stack = Stack()
    worker_log, short_worker_log = settings.data_dir / "worker.log", settings.data_dir / "short-worker.log"
    port = free_port()
    token_before = os.environ.get("LORASTUDIO_TOKEN")
    os.environ["LORASTUDIO_TOKEN"] = admin.token  # `lorastudio datasets upload …` run by a test signs in as admin
    try:
        stack.start("worker", worker_argv(settings.queue, concurrency=2), env, worker_log)
        stack.start("short-worker", lane_argv(settings, "short"), env, short_worker_log)
        generation = stack.start("generation", generation_argv(), env, settings.data_dir / "generation.log")
        web = stack.start("web", web_argv("127.0.0.1", port), env, settings.data_dir / "web.log")
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url, web)
        _wait_for_log(stack, "generation", GENERATION_READY, generation)  # it serves /v1 once it logs this
        with httpx.Client(base_url=url, timeout=60, headers=admin.headers) as http:
            yield LiveStudio(url=url, http=http, worker_log=worker_log, username=admin.username,
                             password=admin.password, token=admin.token, short_worker_log=short_worker_log)
    finally:
        stack.stop(grace_s=10)
        if token_before is None:
            os.environ.pop("LORASTUDIO_TOKEN", None)
        else:
            os.environ["LORASTUDIO_TOKEN"] = token_before


def _wait_for_log(stack: Stack, name: str, marker: str, proc, timeout_s: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while marker not in stack.logged(name):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start: {stack.logged(name)[-2000:]}")
        time.sleep(0.2)


CHAT_ROWS = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                  {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}
    for a in range(6) for b in range(4)
]


def run_spec(dataset_id: int, model: str, method: str, max_steps: int) -> dict:
    """A small, fast spec for the tiny model."""
    return {
        "name": f"e2e-{method}", "method": method,
        "model": {"base_model": model},
        "data": {"dataset_id": dataset_id, "max_seq_length": 64},
        "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
        "training": {"max_steps": max_steps, "learning_rate": 5e-3, "per_device_batch_size": 4,
                     "logging_steps": 1, "warmup_ratio": 0.0, "lr_scheduler": "constant"},
    }


@pytest.fixture(scope="session")
def studio_objects(live_studio: LiveStudio, tiny_model_dir: Path) -> dict:
    """A registered tiny model and an uploaded chat dataset on the live studio."""
    http = live_studio.http
    model = http.post("/api/models", json={"name": f"tiny-{time.time_ns()}", "ref": str(tiny_model_dir)})
    assert model.status_code == 201, model.text
    body = "\n".join(json.dumps(r) for r in CHAT_ROWS).encode()
    dataset = http.post("/api/datasets", files={"file": ("chat.jsonl", body)}, data={"name": "chat"})
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["format"] == "messages"
    return {"model": model.json()["name"], "dataset_id": dataset.json()["id"]}
