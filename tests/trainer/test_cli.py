"""`python -m worker.trainer` as a child process: a clean JSON stream, SIGTERM as a clean stop, error events."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _spawn(spec, tmp_path: Path) -> subprocess.Popen:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec.to_yaml(), encoding="utf-8")
    argv = [sys.executable, "-m", "worker.trainer", str(spec_path), "--out", str(tmp_path / "out")]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_sigterm_mid_run_stops_cleanly_with_an_adapter(make_spec, tmp_path) -> None:
    proc = _spawn(make_spec(training={"max_steps": 5000}), tmp_path)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))  # every stdout line must be an event
        if events[-1]["type"] == "metric" and events[-1]["step"] >= 2 and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "cancelled"
    assert events[-1]["final"]["steps"] < 5000
    started = next(e for e in events if e["type"] == "started")
    assert set(started["versions"]) == {"torch", "transformers", "peft", "bitsandbytes"}
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_paged_optimizer_on_cpu_is_an_actionable_error(make_spec, tmp_path) -> None:
    proc = _spawn(make_spec(training={"optimizer": "paged_adamw_8bit"}), tmp_path)
    out, _ = proc.communicate(timeout=120)
    events = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 1
    assert events[-1]["type"] == "error" and events[-1]["code"] == "unsupported_on_device"
    assert "adamw_torch" in events[-1]["message"]
