"""`python -m worker.trainer` as a child process, spawned and read by the worker's own process code
(worker.jobs.child): a clean report stream, SIGTERM as a clean stop, error reports."""

from __future__ import annotations

import os
from pathlib import Path

from worker.jobs.child import ChildProcess, child_env, module_argv


def _spawn(spec, tmp_path: Path) -> ChildProcess:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec.to_yaml(), encoding="utf-8")
    argv = module_argv("worker.trainer", spec_path, "--out", tmp_path / "out")
    return ChildProcess(argv, child_env(os.environ, "system")).start()


def test_sigterm_mid_run_stops_cleanly_with_an_adapter(make_spec, tmp_path) -> None:
    proc = _spawn(make_spec(training={"max_steps": 5000}), tmp_path)
    events = []
    for report in proc.reports():
        events.append(report.to_dict())
        if events[-1]["type"] == "metric" and events[-1]["step"] >= 2 and proc.returncode is None:
            proc.terminate()
    assert proc.skipped == 0  # every stdout line must be a report
    assert proc.wait() == 0
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "cancelled"
    assert events[-1]["final"]["steps"] < 5000
    started = next(e for e in events if e["type"] == "started")
    assert set(started["versions"]) == {"torch", "transformers", "peft", "bitsandbytes"}
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_paged_optimizer_on_cpu_is_an_actionable_error(make_spec, tmp_path) -> None:
    proc = _spawn(make_spec(training={"optimizer": "paged_adamw_8bit"}), tmp_path)
    events = [report.to_dict() for report in proc.reports()]
    assert proc.skipped == 0
    assert proc.returncode == 1
    assert events[-1]["type"] == "error" and events[-1]["code"] == "unsupported_on_device"
    assert "adamw_torch" in events[-1]["message"]
