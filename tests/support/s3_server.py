"""An S3-compatible server for tests: moto's standalone server in a process of its own, spoken to over HTTP as MinIO
or AWS S3 would be (no MinIO build is on the package registries these machines reach)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx

from tests.support.requirements import require


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def s3_server(timeout_s: float = 30.0) -> Iterator[str]:
    """Start `python -m moto.server` on a free port; yields its endpoint URL, stops it at the end."""
    require(importlib.util.find_spec("moto") is not None, "moto[server] is not installed: pip install -e '.[dev]'")
    port = _free_port()
    # Its log goes to a file: a pipe nobody reads would fill up with the request log and stall the server.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, url, log, timeout_s)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen, url: str, log: IO[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1.0)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"moto's S3 server did not start: {log.read().decode()[-2000:]}") from None
            time.sleep(0.2)
