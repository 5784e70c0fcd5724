"""A worker started for CUDA never trains on the CPU in silence: without a usable GPU it refuses to start, and its
trainers refuse jobs, each naming the cause (CPU-only torch, no driver, a driver too old for torch's CUDA) and
the fix. Real processes where this machine can show it (it has no GPU); the cause's wording from pure logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from worker.trainer import device_choice
from worker.trainer.device_choice import DeviceUnavailable, cuda_problem, pick_device

ROOT = Path(__file__).resolve().parents[2]
torch = pytest.importorskip("torch")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: nothing to refuse")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=300)


@no_gpu
def test_a_cuda_worker_without_a_gpu_refuses_to_start_saying_why() -> None:
    refused = _cli("worker", "--device", "cuda", DATABASE_URL="sqlite:////nonexistent/never-opened.db")
    assert refused.returncode == 1
    assert "started for CUDA" in refused.stderr and "CPU-only build" in refused.stderr
    assert "download.pytorch.org" in refused.stderr  # the fix
    wrong = _cli("worker", LORASTUDIO_DEVICE="gpu")
    assert wrong.returncode == 1 and "use auto, cuda or cpu" in wrong.stderr


@no_gpu
def test_its_trainer_refuses_a_job_instead_of_training_on_the_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text(json.dumps([{"instruction": "Say yes", "input": "", "output": "yes"}] * 4))
    spec = {"method": "lora", "model": {"base_model": str(tiny_model_dir)}, "data": {"path": "rows.json"},
            "training": {"max_steps": 2, "per_device_batch_size": 2}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _cli("train", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), LORASTUDIO_DEVICE="cuda")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["type"] == "error"]
    assert result.returncode != 0 and errors and errors[0]["code"] == "device_unavailable", result.stderr[-2000:]
    assert "CPU-only build" in errors[0]["message"]
    assert not (tmp_path / "out" / "adapter").exists()


def test_cpu_is_taken_when_asked_and_auto_falls_back_only_when_allowed(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(device_choice.DEVICE_ENV, "cpu")
    assert pick_device() == "cpu"
    monkeypatch.setenv(device_choice.DEVICE_ENV, "auto")
    assert pick_device() == "cpu"
    monkeypatch.setenv(device_choice.DEVICE_ENV, "cuda")
    with pytest.raises(DeviceUnavailable):
        pick_device()


def test_the_cause_is_named_no_driver_or_a_driver_too_old(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.version, "cuda", "13.0")  # as PyPI's CUDA build would say
    missing = cuda_problem(tmp_path / "no-such-file")
    assert "no NVIDIA driver is loaded" in missing and "--gpus all" in missing
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 2023\n")
    old = cuda_problem(driver)
    assert "built for CUDA 13.0" in old and "535.104.05" in old and "Update the NVIDIA driver" in old
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES='' hides the GPUs" in cuda_problem(driver)
