"""Short jobs never wait behind training: with both slots of the live studio's training worker busy, a dataset
doctor analysis is computed by the worker of short jobs while the runs go on."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.conftest import LiveStudio, run_spec

pytestmark = pytest.mark.e2e
LONG_RUN = 100_000  # steps of ~10 ms on the tiny model: far longer than the test; cancelled at its end


def _until(what: str, check, timeout: float, logs: LiveStudio):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    live = {status: [(r["id"], r["name"], r["current_step"]) for r in logs.http.get(
        "/api/runs", params={"status": status}).json()] for status in ("running", "queued")}
    processes = subprocess.run(["ps", "-eo", "pid,ppid,etimes,args", "--forest"], capture_output=True, text=True)
    raise AssertionError(f"{what} not within {timeout:.0f} s; runs of the studio: {live}\nprocesses:\n"
                         + processes.stdout[-4000:] + "\nshort worker log:\n"
                         + logs.short_worker_log.read_text()[-3000:] + "\nworker log:\n"
                         + logs.worker_log.read_text()[-3000:])


def _idle(http, model: str) -> bool:  # noqa: ANN001
    """No run of the studio's model is queued or running (earlier tests' runs have ended)."""
    return not any(r["spec"].get("model", {}).get("base_model") == model for status in ("running", "queued")
                   for r in http.get("/api/runs", params={"status": status}).json())


def test_analysis_completes_while_every_training_slot_is_busy(live_studio: LiveStudio, studio_objects: dict) -> None:
    http, dataset, model = live_studio.http, studio_objects["dataset_id"], studio_objects["model"]
    _until("the training worker idle (runs of earlier tests ended)", lambda: _idle(http, model), 240, live_studio)
    runs = [http.post("/api/runs", json=run_spec(dataset, model, "lora", LONG_RUN)).json()["id"] for _ in range(2)]
    try:
        _until("both runs stepping", lambda: all(http.get(f"/api/runs/{r}").json()["current_step"] > 0 for r in runs),
               180, live_studio)
        posted = http.post(f"/api/datasets/{dataset}/analyses", json={"base_model": model, "max_seq_length": 40})
        assert posted.status_code == 202, posted.text
        path = f"/api/datasets/{dataset}/analyses/{posted.json()['id']}"
        analysis = _until("the analysis", lambda: (a := http.get(path).json())["status"] in ("succeeded", "failed")
                          and a, 180, live_studio)
        assert analysis["status"] == "succeeded", analysis["error"]
        assert [http.get(f"/api/runs/{r}").json()["status"] for r in runs] == ["running", "running"]
        received = "Task datasets.analyze["  # Celery's "Task NAME[id] received" (both list the task at start)
        assert received in live_studio.short_worker_log.read_text()
        assert received not in live_studio.worker_log.read_text()  # the training worker never gets one
    finally:
        for run_id in runs:
            http.post(f"/api/runs/{run_id}/cancel")
        for run_id in runs:
            live_studio.wait_for(run_id, {"cancelled", "failed", "succeeded"}, timeout=120)
