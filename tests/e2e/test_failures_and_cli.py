"""A run that fails reports a stable code and advice; the CLI drives a running studio and trains locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import CHAT_ROWS, LiveStudio, run_spec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_cuda_only_optimizer_is_refused_before_it_is_queued(live_studio: LiveStudio, studio_objects: dict) -> None:
    deadline = time.monotonic() + 60
    while not live_studio.http.get("/api/workers").json() and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker announces its (CPU) device once it is ready
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "qlora", 5)
    spec["training"]["optimizer"] = "paged_adamw_8bit"  # needs CUDA; this worker has none
    response = live_studio.http.post("/api/runs", json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "training.optimizer"
    assert response.json()["error"]["code"] == "optimizer_needs_cuda"


def test_trainer_error_fails_the_run_with_code_and_traceback(live_studio: LiveStudio, studio_objects: dict) -> None:
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", 5)
    spec["data"]["max_seq_length"] = 8  # the prompts alone are longer, so no answer token is left to learn
    run_id = live_studio.http.post("/api/runs", json=spec).json()["id"]
    run = live_studio.wait_for(run_id, {"succeeded", "failed", "cancelled"})
    assert run["status"] == "failed"
    assert run["error_code"] == "no_trainable_tokens", run
    assert run["error_message"] and run["error_traceback"]
    assert run["finished_at"] and live_studio.http.get(f"/api/runs/{run_id}/adapter").status_code == 409
    assert "max_seq_length" in run["error_advice"]
    kinds = [e["kind"] for e in live_studio.http.get(f"/api/runs/{run_id}/timeline").json()]
    assert kinds[0] == "queued" and "started" in kinds and kinds[-1] == "failed", kinds


def test_absurd_learning_rate_fails_as_diverged(live_studio: LiveStudio, studio_objects: dict,
                                                demo_model_dir: Path) -> None:
    http = live_studio.http
    model = http.post("/api/models", json={"name": f"smollm2-{time.time_ns()}", "ref": str(demo_model_dir)})
    assert model.status_code == 201, model.text
    spec = run_spec(studio_objects["dataset_id"], model.json()["name"], "lora", 20)
    spec["training"]["learning_rate"] = 1.0  # absurd for a pretrained model: its loss leaps far above the start
    run_id = http.post("/api/runs", json=spec).json()["id"]
    run = live_studio.wait_for(run_id, {"succeeded", "failed", "cancelled"})
    assert run["status"] == "failed" and run["error_code"] == "diverged", run
    assert "exploded" in run["error_message"] or "became" in run["error_message"]
    assert "learning_rate" in run["error_advice"]
    assert run["current_step"] < 20
    assert http.get(f"/api/runs/{run_id}/adapter").status_code == 409  # a diverged adapter is never offered
    losses = [p["values"]["loss"] for p in http.get(f"/api/runs/{run_id}/metrics").json()
              if "loss" in p["values"]]
    assert losses and losses[-1] > 4 * losses[0]  # the curve that shows why stays on the run page


def _cli(*args: str, server: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"LORASTUDIO_SERVER": server} if server else {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_cli_against_a_running_studio(live_studio: LiveStudio, studio_objects: dict, tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in CHAT_ROWS))
    uploaded = _cli("datasets", "upload", str(data), "--name", "from-cli", server=live_studio.url)
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = json.loads(uploaded.stdout)["id"]
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(run_spec(dataset_id, studio_objects["model"], "lora", 3)))
    created = _cli("runs", "create", str(spec_file), server=live_studio.url)
    assert created.returncode == 0, created.stderr
    run_id = int(created.stdout.split()[1])
    live_studio.wait_for(run_id, {"succeeded"})
    shown = _cli("runs", "show", str(run_id), server=live_studio.url)
    assert json.loads(shown.stdout)["status"] == "succeeded"
    out = tmp_path / "adapter.zip"
    assert _cli("runs", "download", str(run_id), "--out", str(out), server=live_studio.url).returncode == 0
    assert "adapter_model.safetensors" in zipfile.ZipFile(out).namelist()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": 1}\n')
    refused = _cli("datasets", "upload", str(bad), server=live_studio.url)
    assert refused.returncode == 1 and "wrong_type" in refused.stderr


def test_cli_train_runs_the_trainer_without_a_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"instruction": f"Say {w}", "input": "", "output": w} for w in ("yes", "no", "maybe", "hello")]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows))
    spec = {"method": "lora", "model": {"base_model": str(tiny_model_dir)}, "data": {"path": "alpaca.json"},
            "training": {"max_steps": 3, "per_device_batch_size": 2}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _cli("train", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "succeeded"
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
