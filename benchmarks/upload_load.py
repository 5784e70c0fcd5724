"""Other users' requests while a big upload is received, checked and stored (issue 16): one web process, as
`lorastudio up` starts it, in a fresh database.

Another user requests GET /api/datasets (a signed-in database read) one after another, first with the studio
idle, then for as long as one upload of --mb MB (JSONL: --tiny-rows tiny rows, the slow kind to check, then rows
of ~8 KB) is in flight. It prints p50/p95 of both and the busy/idle ratio, and the upload's time and status.

    .venv/bin/python benchmarks/upload_load.py [--mb 1024] [--tiny-rows 3000000] [--postgresql]

Goal: p95 under 200 ms during the upload (the checking and storing run in a worker thread, off the event loop).
tests/security/test_upload_bombs.py runs a 200 MB version of the same measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.resources import Resources  # noqa: E402
from benchmarks.web_load import database  # noqa: E402
from tests.support.accounts import create_account  # noqa: E402
from tests.support.upload_server import latencies_while, percentile, web_server  # noqa: E402

IDLE_REQUESTS = 100


def generate(path: Path, megabytes: int, tiny_rows: int) -> int:
    """A JSONL file of about `megabytes` MB: tiny rows, then rows of ~8 KB; its size in bytes."""
    with path.open("wb") as out:
        for start in range(0, tiny_rows, 100_000):
            out.write(b"".join(json.dumps({"text": f"row {i}"}).encode() + b"\n"
                               for i in range(start, min(start + 100_000, tiny_rows))))
        line = json.dumps({"text": "y" * 8000}).encode() + b"\n"
        rest = (megabytes << 20) - out.tell()
        for _ in range(max(rest, 0) // len(line) // 1000):
            out.write(line * 1000)
    return path.stat().st_size


def main() -> None:
    """Measure idle, then during the upload; print the two and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--tiny-rows", type=int, default=3_000_000)
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL (LORASTUDIO_TEST_PG) over SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lorastudio-upload-load-") as tmp:
        root = Path(tmp)
        size = generate(root / "big.jsonl", args.mb, args.tiny_rows)
        with database(root, args.postgresql) as url:
            _bench(root, url, size)


def _bench(root: Path, url: str, size: int) -> None:
    settings = Settings(data_dir=root, DATABASE_URL=url, queue="upload-bench")
    res = Resources(settings)
    uploader, other = create_account(res, "uploader"), create_account(res, "other")
    with web_server(settings, root / "web.log") as (base, _):
        probe = f"{base}/api/datasets"
        count = iter(range(IDLE_REQUESTS))
        idle = latencies_while(lambda: next(count, None) is not None, probe, other.headers)
        outcome: dict[str, object] = {}
        thread = threading.Thread(target=_upload, args=(probe, uploader.headers, root / "big.jsonl", outcome))
        thread.start()
        busy = latencies_while(thread.is_alive, probe, other.headers)
        thread.join()
    idle_p50, idle_p95 = percentile(idle, 0.5), percentile(idle, 0.95)
    busy_p50, busy_p95 = percentile(busy, 0.5), percentile(busy, 0.95)
    print(f"upload: {size / 2**20:.0f} MiB, status {outcome['status']}, {outcome['seconds']:.1f} s")
    print(f"idle: p50 {idle_p50 * 1000:.1f} ms p95 {idle_p95 * 1000:.1f} ms ({len(idle)} requests)")
    print(f"during upload: p50 {busy_p50 * 1000:.1f} ms p95 {busy_p95 * 1000:.1f} ms ({len(busy)} requests)")
    print(f"ratio busy/idle: p50 {busy_p50 / idle_p50:.1f}x p95 {busy_p95 / idle_p95:.1f}x; "
          f"goal p95 < 200 ms: {'met' if busy_p95 < 0.2 else 'NOT met'}")


def _upload(url: str, headers: dict[str, str], path: Path, outcome: dict[str, object]) -> None:
    start = time.perf_counter()
    with path.open("rb") as body:
        response = httpx.post(url, params={"filename": path.name}, content=body, headers=headers, timeout=1800)
    outcome["status"], outcome["seconds"] = response.status_code, time.perf_counter() - start


if __name__ == "__main__":
    main()
