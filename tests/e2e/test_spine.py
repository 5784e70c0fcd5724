"""Upload → queue → LoRA/QLoRA training on a real worker → live SSE → adapter download, over HTTP only."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.e2e.conftest import LiveStudio, run_spec
from tests.support.processes import trainer_pids
from worker.planning.allocator import find_allocator
from worker.planning.spec import RunSpec

pytestmark = pytest.mark.e2e

class SseRecorder:
    """Reads a run's SSE stream on a thread, noting each metric step and the status seen when it arrived."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers, self.points, self.statuses = url, headers, [], []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        status = "queued"
        with httpx.stream("GET", self.url, headers=self.headers, timeout=300) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "metric":
                    self.points.append((json.loads(line[6:])["step"], status))
                elif line.startswith("data: ") and event == "status":
                    status = json.loads(line[6:])["status"]
                    self.statuses.append(status)


def _load_adapter(zip_bytes: bytes, base_dir: Path, tmp_path: Path) -> PeftModel:
    folder = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(zip_bytes)).extractall(folder)
    assert {"adapter_config.json", "adapter_model.safetensors", "spec.yaml", "README.md"} <= {
        p.name for p in folder.iterdir()}
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    return PeftModel.from_pretrained(base, folder), folder


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_run_trains_streams_and_downloads(
    method: str, live_studio: LiveStudio, studio_objects: dict, tiny_model_dir: Path, tmp_path: Path, settings
) -> None:
    http = live_studio.http
    created = http.post("/api/runs", json=run_spec(studio_objects["dataset_id"], studio_objects["model"], method, 30))
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    recorder = SseRecorder(f"{live_studio.url}/api/runs/{run_id}/events", live_studio.auth_headers)
    run = live_studio.wait_for(run_id, {"succeeded", "failed", "cancelled"})
    assert run["status"] == "succeeded", run
    recorder.thread.join(timeout=30)
    steps = [step for step, _ in recorder.points]
    assert steps == sorted(steps) and len(set(steps)) >= 20, steps
    assert any(status == "running" for _, status in recorder.points), "no point arrived while the run was running"
    assert recorder.statuses[-1] == "succeeded"
    kinds = [e["kind"] for e in http.get(f"/api/runs/{run_id}/timeline").json()]
    assert kinds[:2] == ["queued", "started"] and "training" in kinds and kinds[-1] == "succeeded", kinds
    training = next(e for e in http.get(f"/api/runs/{run_id}/timeline").json() if e["kind"] == "training")
    # The worker spawned its trainer on the allocator its settings name (tcmalloc where installed, by default).
    assert training["data"]["allocator"] == find_allocator(settings.trainer_allocator)[0], training
    assert run["versions"].get("peft") and run["device"] and run["spec"]["method"] == method
    losses = [p["values"]["loss"] for p in http.get(f"/api/runs/{run_id}/metrics").json() if "loss" in p["values"]]
    assert losses[-1] < losses[0], losses

    download = http.get(f"/api/runs/{run_id}/adapter")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    model, folder = _load_adapter(download.content, tiny_model_dir, tmp_path)
    weights = load_file(folder / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(torch.count_nonzero(t) > 0 for t in lora_b), "LoRA B is still at its zero initialisation"
    assert (folder / "tokenizer_config.json").is_file()
    stored = RunSpec.from_yaml((folder / "spec.yaml").read_text())
    assert stored.data.dataset_id == studio_objects["dataset_id"] and stored.model.base_model == studio_objects["model"]
    dataset = http.get(f"/api/datasets/{studio_objects['dataset_id']}").json()
    assert dataset["sha256"] in (folder / "README.md").read_text()
    assert any("lora" in n for n, _ in model.named_parameters())


def test_redelivered_task_trains_once(live_studio: LiveStudio, studio_objects: dict, settings) -> None:
    from app.core.queue_client import TaskSender

    http = live_studio.http
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", 8)
    run_id = http.post("/api/runs", json=spec).json()["id"]
    TaskSender(settings)("runs.execute", {"run_id": run_id})  # the same message again, as a redelivery would
    run = live_studio.wait_for(run_id, {"succeeded", "failed"})
    assert run["status"] == "succeeded" and run["attempts"] == 1
    time.sleep(3)  # give the duplicate time to be consumed (and skipped)
    points = http.get(f"/api/runs/{run_id}/metrics").json()
    steps = [p["step"] for p in points if "loss" in p["values"]]
    assert steps == sorted(set(steps)) and len(steps) == 8, steps
    assert http.get(f"/api/runs/{run_id}").json()["attempts"] == 1
    assert "was not queued" in live_studio.worker_log.read_text()


def test_cancel_running_run_keeps_partial_adapter(live_studio: LiveStudio, studio_objects: dict, settings) -> None:
    http = live_studio.http
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", 5000)
    run_id = http.post("/api/runs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and http.get(f"/api/runs/{run_id}").json()["current_step"] < 3:
        time.sleep(0.3)
    assert trainer_pids(settings.work_dir, run_id), "the trainer process of the running run was not found"
    cancelled_at = time.monotonic()
    assert http.post(f"/api/runs/{run_id}/cancel").status_code == 200
    run = live_studio.wait_for(run_id, {"cancelled", "failed", "succeeded"}, timeout=60)
    assert run["status"] == "cancelled", run
    assert time.monotonic() - cancelled_at < 30
    assert 3 <= run["current_step"] < 5000
    assert trainer_pids(settings.work_dir, run_id) == [], "the trainer outlived its cancelled run"
    download = http.get(f"/api/runs/{run_id}/adapter")
    assert download.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert "adapter_model.safetensors" in names
    again = http.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_finished"


def test_worker_announces_its_device(live_studio: LiveStudio) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (workers := live_studio.http.get("/api/workers").json()):
        time.sleep(0.5)
    assert workers and workers[0]["kind"] in ("cpu", "cuda") and workers[0]["memory_gb"] > 0, workers
