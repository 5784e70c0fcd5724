"""`lorastudio up` starts Redis, a training worker, a worker of short jobs and the web app with embedded defaults,
makes the first admin on a fresh studio and, once everything is up, prints the sign-in box last (no access log
scrolls it away); Ctrl-C stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.stack import free_port

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    """Every descendant of pid (from /proc), so nothing started by `up` escapes the check."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _log_in(url: str, username: str, password: str) -> int:
    """Sign in through the login form; the status of GET /api/runs with the session cookie."""
    with httpx.Client(base_url=url, timeout=10) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
        browser.post("/login", data={"username": username, "password": password, "csrf_token": token})
        return browser.get("/api/runs").status_code


class Output:
    """The lines a process prints, read on a thread, so a test can wait for one without blocking forever."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def wait_for(self, pattern: str, after: int = -1, timeout: float = 180) -> int:
        """The index of the first line after the line `after` that matches pattern, once printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = list(self.lines)
            found = next((i for i in range(after + 1, len(lines)) if re.search(pattern, lines[i])), None)
            if found is not None:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{''.join(self.lines)}")


def test_up_serves_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "LORASTUDIO_ADMIN_PASSWORD")}
    env |= {"LORASTUDIO_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1", "LORASTUDIO_CALIBRATE": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = out.wait_for(r"LoRA Studio is ready: " + re.escape(url))
        closing = out.wait_for(r"^\+-+\+$", after=ready, timeout=5)
        box = "".join(out.lines[ready - 1:closing + 1])
        admin = re.search(r"Sign in as (\S+), password: (\S+)", box)
        assert admin, f"the first start prints the admin's credentials:\n{box}"
        assert f"Forgot it? LORASTUDIO_DATA_DIR={tmp_path / 'data'} lorastudio users set-password admin" in box
        # Everything was up before it was printed: the web app, both workers (their logs say they consume) and the
        # generation service (it serves).
        assert httpx.get(f"{url}/readyz", timeout=5).json()["status"] == "ready"
        for log in ("worker.log", "short-worker.log"):
            assert " ready." in (tmp_path / "data" / log).read_text(), log
        assert "generation service ready:" in (tmp_path / "data" / "generation.log").read_text()
        assert httpx.get(f"{url}/api/runs", timeout=5).status_code == 401
        assert _log_in(url, *admin.groups()) == 200
        assert (tmp_path / "data" / "studio.db").is_file()
        children = _children(proc.pid)
        assert len(children) >= 5  # redis-server, celery training worker, celery short worker, generation, uvicorn
        time.sleep(1)
        after_box = out.lines[closing + 1:]
        assert after_box == [], f"printed after the sign-in box (an access log?): {after_box}"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=40)
        time.sleep(0.5)
        assert [pid for pid in children if _alive(pid)] == []
        assert not [line for line in out.lines if '"GET /' in line or '"POST /' in line], "access log lines printed"
    finally:
        if proc.poll() is None:
            proc.kill()
