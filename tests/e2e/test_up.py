"""`lorastudio up` starts Redis, a worker and the web app with embedded defaults, makes and prints the first
admin on a fresh studio, and Ctrl-C stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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


def test_up_serves_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "LORASTUDIO_ADMIN_PASSWORD")}
    env |= {"LORASTUDIO_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner, banner
        admin = re.search(r"First start: .*username: (\S+)\s+password: (\S+)", proc.stdout.readline())
        assert admin, "the first start prints the admin's credentials"
        assert f"http://127.0.0.1:{port}/login" in proc.stdout.readline()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert ready["status"] == "ready", ready  # SQLite migrated, its own Redis answering
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5).status_code == 401
        assert _log_in(f"http://127.0.0.1:{port}", *admin.groups()) == 200
        assert (tmp_path / "data" / "studio.db").is_file()
        children = _children(proc.pid)
        assert len(children) >= 3  # redis-server, celery worker, uvicorn
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=40)
        time.sleep(0.5)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
