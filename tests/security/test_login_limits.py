"""Sign-in limits on a real web server (uvicorn, as `lorastudio up` starts it): failed sign-ins are refused per
account and per client with 429 and Retry-After, a burst of concurrent sign-ins keeps memory bounded and /healthz
answering, and every attempt lands in the audit log with its client."""

from __future__ import annotations

import re
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import psutil
import pytest
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import session_scope
from app.core.models import AuditEntry
from app.core.resources import Resources
from app.stack import Stack, free_port, studio_env, wait_for_http, web_argv
from tests.support.accounts import create_account

pytestmark = pytest.mark.committed  # the server must see the accounts, and the test the audit rows it writes
PER_ACCOUNT, PER_CLIENT = 4, 10
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Web:
    """A running web server and its process."""

    url: str
    process: psutil.Process


@pytest.fixture(scope="module")
def web(settings: Settings) -> Iterator[Web]:
    """uvicorn on the test database with small limits: 4 failures per account, 10 per client, 2 hashing slots."""
    env = studio_env(settings, LORASTUDIO_LOGIN_FAILURES_PER_ACCOUNT=f"{PER_ACCOUNT} per 10 minutes",
                     LORASTUDIO_LOGIN_FAILURES_PER_CLIENT=f"{PER_CLIENT} per 10 minutes",
                     LORASTUDIO_LOGIN_HASH_SLOTS="2", LORASTUDIO_LOGIN_WAIT_S="20")
    stack, port = Stack(), free_port()
    proc = stack.start("web", web_argv("127.0.0.1", port, access_log=False), env,
                       settings.data_dir / f"web-limits-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, proc)
        yield Web(url, psutil.Process(proc.pid))
    finally:
        stack.stop(grace_s=5)


def _client_address() -> str:
    """A client address of its own (uvicorn trusts X-Forwarded-For from 127.0.0.1, as from a local proxy)."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def _sign_in(web: Web, username: str, password: str, client: str) -> httpx.Response:
    """One browser's sign-in: the form (its login cookie and token), then the post."""
    with httpx.Client(base_url=web.url, headers={"X-Forwarded-For": client}, timeout=60) as http:
        token = CSRF_INPUT.search(http.get("/login").text).group(1)
        return http.post("/login", data={"username": username, "password": password, "csrf_token": token})


def _audit(resources: Resources, target: str) -> list[AuditEntry]:
    with session_scope(resources.session_factory) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id)))


def test_an_account_is_refused_after_its_failures_even_with_the_right_password(web: Web, resources) -> None:  # noqa: ANN001
    account, client = create_account(resources), _client_address()
    for _ in range(PER_ACCOUNT):
        assert _sign_in(web, account.username, "wrong password!", client).status_code == 401
    refused = _sign_in(web, account.username, account.password, _client_address())  # from elsewhere, too
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert "Too many failed sign-ins for this account" in refused.text
    # The failure that reached the limit is audited once; the refused attempts after it write nothing.
    assert _sign_in(web, account.username, "wrong password!", client).status_code == 429
    actions = [e.action for e in _audit(resources, account.username) if e.action.startswith("login")]
    assert actions == ["login.failure"] * PER_ACCOUNT + ["login.limited"]
    other = create_account(resources)  # the same client may still sign in to another account
    assert _sign_in(web, other.username, other.password, client).status_code == 303


def test_a_client_is_refused_after_its_failures_whatever_the_names(web: Web) -> None:
    client = _client_address()
    answers = [_sign_in(web, f"nobody-{uuid.uuid4().hex[:8]}", "wrong password!", client).status_code
               for _ in range(PER_CLIENT + 1)]
    assert answers == [401] * PER_CLIENT + [429]
    assert _sign_in(web, f"nobody-{uuid.uuid4().hex[:8]}", "x" * 10, _client_address()).status_code == 401


def test_a_success_clears_the_accounts_failures(web: Web, resources) -> None:  # noqa: ANN001
    account, client = create_account(resources), _client_address()
    for _ in range(3):
        for _ in range(PER_ACCOUNT - 1):
            assert _sign_in(web, account.username, "wrong password!", client).status_code == 401
        assert _sign_in(web, account.username, account.password, _client_address()).status_code == 303


def test_sign_ins_are_audited_with_their_client(web: Web, resources) -> None:  # noqa: ANN001
    account, client = create_account(resources), _client_address()
    assert _sign_in(web, account.username, "wrong password!", client).status_code == 401
    assert _sign_in(web, account.username, account.password, client).status_code == 303
    entries = _audit(resources, account.username)
    logins = [(e.action, e.client, e.actor_user_id) for e in entries if e.action.startswith("login")]
    assert logins == [("login.failure", client, None), ("login.success", client, account.id)]
    assert entries[0].action == "user.create"


def test_concurrent_sign_ins_keep_memory_bounded_and_healthz_answering(web: Web, resources) -> None:  # noqa: ANN001
    accounts = [create_account(resources) for _ in range(5)]
    before = web.process.memory_info().rss
    peak, latencies, statuses, stop = [before], [], [], threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=web.url, timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                statuses.append(http.get("/healthz").status_code)
                latencies.append(time.monotonic() - started)
                peak.append(web.process.memory_info().rss)
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda i: _sign_in(web, accounts[i % 5].username, accounts[i % 5].password,
                                                       _client_address()), range(50)))
    finally:
        stop.set()
        watcher.join()
    codes = [a.status_code for a in answers]
    assert set(statuses) == {200}, statuses
    assert set(codes) <= {303, 503}, codes
    assert all("Retry-After" in a.headers for a in answers if a.status_code == 503), [
        a.text[:300] for a in answers if a.status_code == 503]
    assert codes.count(303) >= 10, codes  # the rest waited their 20 s in line: fewer on a slower machine
    grown_mib = (max(peak) - before) / 2**20
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 2 else latencies[0]
    print(f"50 concurrent sign-ins: {codes.count(303)} signed in, {codes.count(503)} told to retry; web RSS "
          f"{before / 2**20:.0f} MiB -> peak {max(peak) / 2**20:.0f} MiB (+{grown_mib:.0f}); /healthz p95 "
          f"{p95 * 1000:.0f} ms over {len(latencies)} probes")
    assert grown_mib < 300  # two argon2id checks at a time (64 MiB each), not fifty
    assert p95 < 1.5
