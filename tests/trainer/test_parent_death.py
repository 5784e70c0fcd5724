"""A trainer whose launcher dies (a worker killed with -9) is killed with it, not left training as an orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A stand-in worker: spawns the trainer with the job runner's own process code, prints its pid, echoes its reports.
LAUNCHER = """
import os, sys
from worker.jobs.child import ChildProcess, child_env, module_argv
argv = module_argv("worker.trainer", sys.argv[1], "--out", sys.argv[2])
trainer = ChildProcess(argv, child_env(os.environ, "system", parent_pid=os.getpid())).start()
print(trainer.proc.pid, flush=True)
for report in trainer.reports():
    print(report.to_json(), flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")  # a zombie has died; only its exit status waits for a reaper


def test_trainer_dies_with_its_launcher(make_spec, tmp_path) -> None:
    spec = tmp_path / "spec.yaml"
    # Silent once training (no metric before step 1000): an orphan would not even hit a closed pipe soon.
    spec.write_text(make_spec(training={"max_steps": 5000, "logging_steps": 1000}).to_yaml(), encoding="utf-8")
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(spec), str(tmp_path / "out")], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    trainer = int(launcher.stdout.readline())
    for line in launcher.stdout:  # wait until it trains, so it is past start-up
        if json.loads(line)["type"] == "started":
            break
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(trainer) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(trainer), "the trainer outlived its launcher"
