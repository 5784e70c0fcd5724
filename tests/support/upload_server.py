"""The studio's web process under uvicorn as `lorastudio up` runs it, started for a test or benchmark with settings
of its own (upload spool, limits), and what such tests measure around it (peak RSS, latencies)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.core.config import Settings
from app.stack import free_port, studio_env, wait_for_http, web_argv


@contextmanager
def web_server(settings: Settings, log: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A web process on a free port (env: extra LORASTUDIO_* settings); stopped after, if still running."""
    port = free_port()
    proc = subprocess.Popen(web_argv("127.0.0.1", port, access_log=False), env=studio_env(settings, **env),
                            stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def rss_peak(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def latencies_while(busy: Callable[[], bool], url: str, headers: dict[str, str], pause_s: float = 0.02) -> list[float]:
    """Seconds each GET url took, one after another, for as long as busy() holds."""
    took = []
    with httpx.Client(headers=headers, timeout=30) as client:
        while busy():
            start = time.perf_counter()
            client.get(url).raise_for_status()
            took.append(time.perf_counter() - start)
            time.sleep(pause_s)
    return took


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]
