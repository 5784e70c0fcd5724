"""The web holds under load (issue 16): one web process, as `lorastudio up` starts it, under N concurrent API
requests and, separately, N live-update (SSE) clients of a running run.

For each level N it reports the 5xx count (and other failures), p50/p95 latency of the requests (for SSE: the
time to the first `status` event, i.e. history served) and of /healthz probed meanwhile, and the web process's
resident memory (peak during the level, and after it). SSE levels also publish live points while every client
is connected and count the clients that got all of them (the fan-out).

    .venv/bin/python benchmarks/web_load.py [--levels 50,100,200,500] [--seconds 5] [--postgresql]

Goals: zero 5xx at every level, /healthz p95 <= 100 ms, latency growing by queueing, memory bounded.
tests/reliability/test_web_load.py runs a smaller version (150 requests, 150 SSE clients) of the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core import live, schema  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.db import session_scope  # noqa: E402
from app.core.resources import Resources  # noqa: E402
from app.core.services.runs import record_metrics  # noqa: E402
from app.stack import free_port, studio_env, wait_for_http, web_argv  # noqa: E402
from tests.support.accounts import Account, create_account  # noqa: E402
from tests.support.rows import insert_run  # noqa: E402
from worker.heartbeat import Heartbeat  # noqa: E402
from worker.planning.reports import Metric  # noqa: E402

HEALTH_EVERY_S = 0.05
HISTORY_POINTS = 200  # the running run's stored points: every SSE client reads them first


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def rss(pid: int) -> int:
    """A process's resident set in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Level:
    """What one load level measured."""

    kind: str
    n: int
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failures: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    delivered: int = 0  # SSE: clients that received every live point published while they were connected
    wall_s: float = 0.0

    @property
    def server_errors(self) -> int:
        """Responses 500 and above."""
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def row(self) -> dict[str, Any]:
        """The level as one JSON-able row."""
        return {
            "kind": self.kind, "n": self.n, "done": len(self.latencies), "5xx": self.server_errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "failures": len(self.failures),
            "failure_kinds": dict(Counter(self.failures)),
            "p50_ms": round(statistics.median(self.latencies) * 1000, 1) if self.latencies else None,
            "p95_ms": round(percentile(self.latencies, 95) * 1000, 1),
            "healthz_n": len(self.health), "healthz_failures": self.health_failures,
            "healthz_p50_ms": round(statistics.median(self.health) * 1000, 1) if self.health else None,
            "healthz_p95_ms": round(percentile(self.health, 95) * 1000, 1),
            "healthz_max_ms": round(max(self.health, default=0) * 1000, 1),
            "rss_mb": [round(x / 2**20) for x in (self.rss_before, self.rss_peak, self.rss_after)],
            **({"delivered": self.delivered} if self.kind == "sse" else {}), "wall_s": round(self.wall_s, 1),
        }


# The /healthz prober runs in a process of its own: in the load generator's busy event loop it would time the
# generator's own delays, not the server's.
PROBE = r"""
import json, sys, threading, time
import httpx
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
times, failures = [], 0
with httpx.Client(base_url=sys.argv[1], timeout=60) as client:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            failures += client.get("/healthz").status_code != 200
        except httpx.HTTPError:
            failures += 1
        times.append(time.perf_counter() - started)
        stop.wait(float(sys.argv[2]))
print(json.dumps({"times": times, "failures": failures}))
"""


async def _probe(base: str, level: Level, pid: int, stop: asyncio.Event) -> None:
    """/healthz every HEALTH_EVERY_S from another process, and the server's memory, until stop."""
    prober = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBE, base, str(HEALTH_EVERY_S),
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    while not stop.is_set():
        level.rss_peak = max(level.rss_peak, rss(pid))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    found = json.loads((await prober.communicate(b""))[0])  # stdin closed: the prober stops
    level.health, level.health_failures = found["times"], found["failures"]


def _limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)


async def api_level(base: str, pid: int, headers: dict[str, str], path: str, n: int, seconds: float) -> Level:
    """n clients each sending `GET path` back to back for `seconds` (closed loop: n requests in flight)."""
    level = Level("api", n, rss_before=rss(pid))
    stop, deadline = asyncio.Event(), time.perf_counter() + seconds
    probe = asyncio.create_task(_probe(base, level, pid, stop))
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120, limits=_limits(n)) as client:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                begun = time.perf_counter()
                try:
                    response = await client.get(path)
                except httpx.HTTPError as exc:
                    level.failures.append(type(exc).__name__)
                    continue
                level.statuses[response.status_code] = level.statuses.get(response.status_code, 0) + 1
                level.latencies.append(time.perf_counter() - begun)

        await asyncio.gather(*(one_client() for _ in range(n)))
    level.wall_s = time.perf_counter() - started
    stop.set()
    await probe
    level.rss_after = rss(pid)
    return level


def publish_points(res: Resources, run_id: int, count: int) -> list[int]:
    """Store `count` metric points of the run and publish them, as a training worker does; their seqs."""
    with session_scope(res.session_factory) as session:
        rows = record_metrics(session, run_id, [Metric(step=i + 1, loss=1.0 / (i + 1)) for i in range(count)])
        updates = [live.metric_update(row) for row in rows]
    for update in updates:
        res.redis.publish(live.run_channel(run_id), live.encode(update))
    return [u["seq"] for u in updates]


async def sse_level(base: str, pid: int, headers: dict[str, str], run_id: int, n: int, res: Resources,
                    live_points: int = 5, hold_s: float = 2.0) -> Level:
    """n SSE clients of run_id connect at once; each must get the history and its status; with all connected,
    live_points are published, each client must receive them; then they are held hold_s and closed."""
    level = Level("sse", n, rss_before=rss(pid))
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(base, level, pid, stop))
    connected, all_in = [0], asyncio.Event()
    published: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()
    started = time.perf_counter()
    timeout = httpx.Timeout(120, read=120)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, limits=_limits(n)) as client:

        async def one_client() -> None:
            begun = time.perf_counter()
            seen: set[int] = set()
            counted = False
            try:
                async with client.stream("GET", f"/api/runs/{run_id}/events") as response:
                    level.statuses[response.status_code] = level.statuses.get(response.status_code, 0) + 1
                    if response.status_code != 200:
                        return
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "metric":
                            seen.add(json.loads(line[6:])["seq"])
                        elif line.startswith("data: ") and event == "status" and not counted:
                            counted = True
                            level.latencies.append(time.perf_counter() - begun)
                            connected[0] += 1
                            if connected[0] == n:
                                all_in.set()
                        if published.done() and set(published.result()) <= seen:
                            level.delivered += 1
                            break
            except httpx.HTTPError as exc:
                level.failures.append(type(exc).__name__)
            finally:
                if not counted:
                    connected[0] += 1
                    if connected[0] == n:
                        all_in.set()
            await release.wait()

        async def conduct() -> None:
            with suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 120)
            published.set_result(await asyncio.to_thread(publish_points, res, run_id, live_points))
            await asyncio.sleep(hold_s)
            release.set()

        clients = [asyncio.create_task(one_client()) for _ in range(n)]
        await conduct()
        # A client that got every point stopped reading and waits for release; one still reading is cut.
        _, pending = await asyncio.wait(clients, timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    level.wall_s = time.perf_counter() - started
    stop.set()
    await probe
    await asyncio.sleep(0.5)
    level.rss_after = rss(pid)
    return level


@contextmanager
def running_run(res: Resources, owner: Account, history: int = HISTORY_POINTS) -> Iterator[int]:
    """A committed running run owned by `owner` with `history` stored metric points, beating as a live worker's
    run does while the block lasts: a run that stops beating is reaped by any worker's janitor on the same
    database (requeued after lost_after_s, then started, and failed on its placeholder dataset)."""
    with session_scope(res.session_factory) as session:
        run_id = insert_run(session, owner_id=owner.id, name="load", total_steps=10_000, attempts=1)
    heartbeat = Heartbeat(res.session_factory, run_id, attempt=1).start()
    try:
        publish_points(res, run_id, history)
        yield run_id
    finally:
        heartbeat.stop()


@contextmanager
def web_server(settings: Settings, log: Path, **env: str) -> Iterator[tuple[str, int]]:
    """The web app as `lorastudio up` runs it (app.stack.web_argv, no access log), on a free port, env naming
    settings (sse_max_clients="1000"); (url, pid)."""
    port = free_port()
    environ = studio_env(settings, PYTHONPATH=str(ROOT), **{f"LORASTUDIO_{k.upper()}": v for k, v in env.items()})
    proc = subprocess.Popen(web_argv("127.0.0.1", port, access_log=False), env=environ, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_levels(url: str, pid: int, account: Account, run_id: int, res: Resources, levels: list[int],
                     seconds: float, kinds: tuple[str, ...] = ("api", "sse")) -> list[Level]:
    """Every API level, then every SSE level, printing one JSON row each."""
    results = []
    for kind in kinds:
        for n in levels:
            if kind == "api":
                level = await api_level(url, pid, account.headers, f"/api/runs/{run_id}", n, seconds)
            else:
                level = await sse_level(url, pid, account.headers, run_id, n, res)
            print(json.dumps(level.row()), flush=True)
            results.append(level)
    return results


PG_ADMIN_URL = os.environ.get("LORASTUDIO_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg(statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


@contextmanager
def database(root: Path, postgresql: bool) -> Iterator[str]:
    """A fresh migrated database: SQLite in root, or a PostgreSQL database dropped at the end."""
    if not postgresql:
        url = f"sqlite:///{root / 'studio.db'}"
        schema.upgrade(url)
        yield url
        return
    name = f"load_{os.getpid()}_{int(time.time())}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        schema.upgrade(url)
        yield url
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    """Start a studio database and one web process, run the levels, print the curve."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="50,100,200,500")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each API level")
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL (LORASTUDIO_TEST_PG) over SQLite")
    parser.add_argument("--kinds", default="api,sse")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="lorastudio-load-") as tmp:
        root = Path(tmp)
        with database(root, args.postgresql) as url:
            _bench(root, url, levels, args)


def _bench(root: Path, url: str, levels: list[int], args: argparse.Namespace) -> None:
    settings = Settings(data_dir=root, DATABASE_URL=url, queue="load-bench")
    res = Resources(settings)
    account = create_account(res, "load", admin=True)
    # One user holds every stream here: the per-user bound (50 by default) is raised for the benchmark.
    try:
        with (running_run(res, account) as run_id,
              web_server(settings, root / "web.log", sse_max_clients_per_user=str(max(levels) + 10)) as (base, pid)):
            print(json.dumps({"database": url.split(":")[0], "levels": levels, "cpus": os.cpu_count()}))
            asyncio.run(run_levels(base, pid, account, run_id, res, levels, args.seconds,
                                   tuple(args.kinds.split(","))))
    finally:
        res.engine.dispose()


if __name__ == "__main__":
    main()
