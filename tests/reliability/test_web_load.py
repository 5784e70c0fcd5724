"""The web holds under load (issue 16): a real web process (as `lorastudio up` starts it) under 150 concurrent API
requests and 150 live-update clients answers every one (no 5xx: requests queue for a database slot instead of
deadlocking the thread pool against the connection pool), keeps /healthz fast, and bounds what it must.

The same code, at 50..500, is benchmarks/web_load.py."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.core.config import Settings
from app.core.resources import Resources
from benchmarks.web_load import Level, api_level, percentile, running_run, sse_level, web_server
from tests.support.accounts import Account, create_account
from tests.support.own_loop import run_on_own_loop

N = 150
PER_USER = N  # the server's per-user bound of live streams: N fit, one more is refused
# The goal is 100 ms (benchmarks/web_load.py); this shared 2-core CI machine runs the load generator, the prober
# and the server side by side, so the test allows some noise on top.
HEALTHZ_P95_S = 0.25
RSS_GROWTH = 150 << 20
UVICORN_DEFAULT_KEEP_ALIVE_S = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default


@pytest.fixture(scope="module")
def loaded(settings: Settings, resources: Resources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(url, pid, account, run_id): one web process, a user with a token and a running run with history."""
    account = create_account(resources)
    log = tmp_path_factory.mktemp("web-load") / "web.log"
    with (running_run(resources, account) as run_id,
          web_server(settings, log, sse_max_clients_per_user=str(PER_USER), sse_max_clients="1000") as (url, pid)):
        yield url, pid, account, run_id


def _holds(level: Level) -> None:
    row = level.row()
    assert level.server_errors == 0 and not level.failures, row
    assert level.health_failures == 0 and percentile(level.health, 95) <= HEALTHZ_P95_S, row
    assert level.rss_peak - level.rss_before < RSS_GROWTH, row


def test_concurrent_api_requests_queue_instead_of_failing(loaded: tuple) -> None:
    url, pid, account, run_id = loaded
    started = time.monotonic()
    level = run_on_own_loop(api_level(url, pid, account.headers, f"/api/runs/{run_id}", N, seconds=3.0))
    _holds(level)
    assert set(level.statuses) == {200} and len(level.latencies) >= N, level.row()
    assert time.monotonic() - started < 30


def test_an_idle_connection_is_left_for_the_client_to_close(loaded: tuple) -> None:
    """Past uvicorn's default keep-alive (5 s, the same as httpx's own expiry) the connection still carries the next
    request: the server never closes it under a client that is just reusing it (the reset that load would show as
    ReadError, and a proxy as 502)."""
    url, _, account, run_id = loaded
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        statuses = []
        for pause in (0.0, UVICORN_DEFAULT_KEEP_ALIVE_S + 1.5):
            time.sleep(pause)
            connection.request("GET", f"/api/runs/{run_id}", headers=account.headers)
            response = connection.getresponse()
            response.read()
            statuses.append((response.status, connection.sock.getsockname()))
    finally:
        connection.close()
    assert [status for status, _ in statuses] == [200, 200]
    assert statuses[0][1] == statuses[1][1]  # the same socket both times


def test_sse_clients_share_one_subscription_and_all_get_live_points(loaded: tuple, resources: Resources) -> None:
    url, pid, account, run_id = loaded
    started = time.monotonic()
    level = run_on_own_loop(sse_level(url, pid, account.headers, run_id, N, resources, hold_s=1.0))
    _holds(level)
    assert level.statuses == {200: N} and len(level.latencies) == N, level.row()
    assert level.delivered == N, level.row()  # every client got every point published while all were connected
    assert time.monotonic() - started < 30


def test_live_streams_are_bounded_per_user(loaded: tuple) -> None:
    url, _, account, run_id = loaded
    _wait_streams_closed(url)

    async def fill_then_one_more() -> tuple[list[int], httpx.Response]:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=account.headers,
                                                                       timeout=30,
                                                                       limits=httpx.Limits(max_connections=N + 10)))
            path = f"/api/runs/{run_id}/events"
            held = [await stack.enter_async_context(client.stream("GET", path)) for _ in range(PER_USER)]
            return [r.status_code for r in held], await client.get(path)

    statuses, refused = run_on_own_loop(fill_then_one_more())
    assert statuses == [200] * PER_USER
    assert refused.status_code == 429 and refused.headers["Retry-After"], refused.text
    assert "LORASTUDIO_SSE_MAX_CLIENTS_PER_USER" in refused.json()["error"]["message"]


@pytest.mark.parametrize("last_event_id", [b"9" * 5000, b"12abc", "²".encode(), b"-1", b"99999999999", b"1e9"])
def test_a_bad_last_event_id_is_a_4xx_naming_the_header(loaded: tuple, last_event_id: bytes) -> None:
    url, _, account, run_id = loaded
    headers = {**account.headers, "Last-Event-ID": last_event_id}
    response = httpx.get(f"{url}/api/runs/{run_id}/events", headers=headers, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "Last-Event-ID"


def test_a_good_last_event_id_resumes_after_it(loaded: tuple) -> None:
    url, _, account, run_id = loaded
    headers = {**account.headers, "Last-Event-ID": "150"}
    with httpx.stream("GET", f"{url}/api/runs/{run_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        first_id = next(line for line in response.iter_lines() if line.startswith("id: "))
    assert first_id == "id: 151"


def test_a_saturated_database_answers_503_with_retry_after(settings: Settings, resources: Resources,
                                                           tmp_path: Path) -> None:
    """One DB slot and 50 ms of patience: most of 150 concurrent requests must give up, each with a 503 that says
    when to come back (never a 500, never a hang), and the process stays healthy."""
    account: Account = create_account(resources)
    with web_server(settings, tmp_path / "web.log", db_pool_size="1", db_wait_s="0.05") as (url, pid):

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, headers=account.headers, timeout=30,
                                         limits=httpx.Limits(max_connections=N + 10)) as client:
                return await asyncio.gather(*(client.get("/api/runs") for _ in range(N)))

        responses = run_on_own_loop(burst())
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 503} and 503 in statuses, statuses
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["Retry-After"] == "2"
        assert "LORASTUDIO_DB_WAIT_S" in refused.json()["error"]["message"]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/api/runs", headers=account.headers, timeout=5).status_code == 200


def _wait_streams_closed(url: str, timeout: float = 10.0) -> None:
    """Until the server counts no open live stream (the clients of an earlier test hung up)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/readyz", timeout=10).json()["live_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
