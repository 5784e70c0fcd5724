"""The body cap holds while the upload streams: 200 MiB gets 413 from a real server without filling its memory."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.stack import free_port, studio_env, wait_for_http, web_argv
from tests.support.accounts import Account

LIMIT = 32 << 20
SENT = 200 << 20
CHUNK = 1 << 20
MAX_GROWTH = 50 << 20


def _rss_peak(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def small_cap_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The studio under uvicorn in a child process, with LORASTUDIO_MAX_UPLOAD_BYTES set low."""
    port = free_port()
    env = studio_env(settings, LORASTUDIO_MAX_UPLOAD_BYTES=str(LIMIT))
    proc = subprocess.Popen(web_argv("127.0.0.1", port), env=env, stdout=(tmp_path / "web.log").open("wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _lines() -> Iterator[bytes]:
    """200 MiB of one valid-looking JSONL line after another, made lazily (no Content-Length: chunked)."""
    line = b'{"text": "' + b"x" * (CHUNK - 13) + b'"}\n'
    for _ in range(SENT // CHUNK):
        yield line


def _multipart() -> Iterator[bytes]:
    """The same lines as the file part of a multipart form (Starlette caps form fields, not file parts)."""
    yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    yield from _lines()
    yield b"\r\n--B--\r\n"


@pytest.mark.parametrize("kind", ["raw", "multipart"])
def test_oversize_streamed_upload_gets_413_without_growing_server_memory(small_cap_server, admin: Account,
                                                                         kind: str) -> None:
    url, pid = small_cap_server
    before = _rss_peak(pid)
    if kind == "raw":
        request = {"params": {"filename": "big.jsonl"}, "content": _lines(), "headers": admin.headers}
    else:
        request = {"headers": {"content-type": "multipart/form-data; boundary=B", **admin.headers},
                   "content": _multipart()}
    response = httpx.post(f"{url}/api/datasets", timeout=120, **request)
    growth = _rss_peak(pid) - before
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "upload_too_large"
    print(f"{kind}: server peak RSS grew {growth / 2**20:.1f} MiB for {SENT >> 20} MiB sent (cap {LIMIT >> 20} MiB)")
    assert growth < MAX_GROWTH
