"""The web image need not carry torch: `pip install .` is the web app, `pip install '.[train]'` adds the trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "support" / "web_without_training.py"
TRAINING = {"torch", "transformers", "peft", "accelerate", "bitsandbytes", "gguf", "sentencepiece", "safetensors"}
REDIS_URL = os.environ.get("LORASTUDIO_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _names(requirements: list[str]) -> set[str]:
    """The distribution names of requirement strings ("torch==2.13.0" -> "torch")."""
    names = set()
    for requirement in requirements:
        name = requirement
        for stop in "[<>=!~;@ ":
            name = name.split(stop, 1)[0]
        names.add(name.strip().lower())
    return names


@pytest.fixture(scope="module")
def project() -> dict:
    """pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_base_install_has_no_training_library(project: dict) -> None:
    assert _names(project["dependencies"]) & TRAINING == set()


def test_the_train_extra_has_them_all_with_torch_pinned(project: dict) -> None:
    extras = project["optional-dependencies"]
    assert _names(extras["train"]) >= TRAINING
    assert "torch==2.13.0" in extras["train"]  # the CPU wheel these machines carry
    assert "pytest" in _names(extras["dev"])


@pytest.fixture(scope="module")
def web_only(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What the web app did in a fresh interpreter where no training library can be imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path_factory.mktemp("web-only")), REDIS_URL],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_web_serves_pages_and_plans_runs_without_training_libraries(web_only: dict) -> None:
    assert web_only["preloaded"] == []  # else the blocker came too late to prove anything
    assert [(request, code) for request, code in web_only["statuses"] if code >= 300] == []
    requested = {request for request, _ in web_only["statuses"]}
    planning = {"GET /runs/new", "POST /runs/new/estimate", "POST /api/estimate?device=gpu-24", "POST /api/runs"}
    assert planning <= requested  # the routes that use worker.planning (spec, presets, estimate, device profiles)
    estimate = web_only["estimate"]
    assert estimate["available"] and estimate["peak_memory_gb"] > 0 and estimate["trainable_params"] > 0
    assert web_only["loaded"] == []


def test_training_commands_name_the_extra_instead_of_crashing(web_only: dict) -> None:
    for command, (exit_code, output) in web_only["cli"].items():
        assert exit_code == 1, (command, output)
        assert "pip install 'lorastudio[train]'" in output and "Traceback" not in output, (command, output)
