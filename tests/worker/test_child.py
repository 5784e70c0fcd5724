"""The child process: spawned in its own group, its stdout read as reports, stopped by signal."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.worker.conftest import child_argv
from worker.jobs.child import ChildProcess, child_env, module_argv
from worker.planning.reports import PARENT_PID_ENV, Finished, Log, Metric


def _env() -> dict[str, str]:
    return child_env(os.environ, "system")


def test_reports_arrive_in_order_and_noise_is_skipped(tmp_path: Path) -> None:
    child = ChildProcess(child_argv("quick"), _env(), stderr=tmp_path / "err.log").start()
    reports = list(child.reports())
    assert [type(r) for r in reports] == [Metric, Metric, Finished]
    assert [r.step for r in reports[:2]] == [1, 2] and child.wait() == 0 and child.exited


def test_terminate_asks_for_a_clean_stop(tmp_path: Path) -> None:
    child = ChildProcess(child_argv("wait"), _env()).start()
    seen = []
    for report in child.reports():
        seen.append(report)
        if isinstance(report, Log):
            child.terminate()
    assert isinstance(seen[-1], Finished) and seen[-1].status == "cancelled" and child.wait() == 0


def test_kill_stops_a_child_that_ignores_terminate(tmp_path: Path) -> None:
    child = ChildProcess(child_argv("stubborn"), _env()).start()
    while not any(isinstance(r, Log) for r in child.next_batch(timeout=5)):
        pass
    child.terminate()
    time.sleep(0.5)
    assert child.returncode is None  # still running
    child.kill()
    assert child.wait() == -9


def test_stderr_tail_and_exit_code_of_a_crash(tmp_path: Path) -> None:
    argv = child_argv("crash")
    argv[2] = "import sys; sys.stderr.write('x' * 5000 + 'the end'); " + argv[2]
    child = ChildProcess(argv, _env(), stderr=tmp_path / "err.log").start()
    list(child.reports())
    assert child.wait() == 3
    tail = child.stderr_tail()
    assert tail.endswith("the end") and len(tail) == 4000


def test_env_and_argv() -> None:
    env = child_env({"LD_PRELOAD": "/x.so", "PATH": "/bin"}, "system", parent_pid=42)
    assert env[PARENT_PID_ENV] == "42" and env["PYTHONUNBUFFERED"] == "1" and env["LD_PRELOAD"] == "/x.so"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"  # packed shapes change every step
    in_a_job = child_env({"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "29500", "PATH": "/bin"}, "system")
    assert not {"RANK", "WORLD_SIZE", "MASTER_PORT"} & set(in_a_job)  # a trainer alone is rank 0 of 1
    own = child_env({"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}, "system")
    assert own["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"  # a host's own setting is kept
    argv = module_argv("worker.trainer", Path("/a/spec.json"), "--out", Path("/b"))
    assert argv[1:] == ["-m", "worker.trainer", "/a/spec.json", "--out", "/b"]
