"""Fair scheduling on real workers, Redis and database, training the tiny model for a few steps: one user's many
queued runs do not hold back another user's first, an admin's raised priority goes first, and a user's
running-runs quota holds while their extra runs wait (parked, then sent again as their slots free)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.core.models import Run, User
from app.core.services import accounts
from app.core.services import datasets as dataset_service
from app.core.services import runs as run_service
from tests.support.accounts import create_account, log_in
from tests.support.fleet import Fleet, make_fleet, wait_for
from worker.planning.spec import RunSpec

pytestmark = pytest.mark.e2e
STEPS = 3
ENDED = {"succeeded", "failed", "cancelled"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet(settings, tmp_path: Path, tiny_model_dir: Path):
    """A fleet with the tiny model registered; its workers are started by the test."""
    made = make_fleet(settings, tmp_path / "fairness")
    made.register(tiny_model_dir)
    yield made
    made.cancel_unfinished()
    made.stop()


def _user(fleet: Fleet, *, admin: bool = False, **quota: int) -> tuple[int, int]:
    """A user with quotas and a dataset of their own: (user id, dataset id)."""
    data = fleet.settings.data_dir / "chat.jsonl"
    with session_scope(fleet.resources.session_factory) as session:
        user = accounts.create_user(session, f"u{uuid.uuid4().hex[:8]}", "correct horse battery", is_admin=admin)
        for column, value in quota.items():
            setattr(user, column, value)
        dataset = dataset_service.create_dataset(session, data, "chat.jsonl", user=user)
        return user.id, dataset.id


def _queue(fleet: Fleet, owner: tuple[int, int], count: int = 1, priority: int = 0) -> list[int]:
    """count runs queued by owner as the API queues them (sent to the fleet's Redis once committed)."""
    spec = fleet.spec(STEPS)
    spec["data"]["dataset_id"] = owner[1]
    ids = []
    for _ in range(count):
        with session_scope(fleet.resources.session_factory) as session:
            run = run_service.create_run(session, RunSpec.model_validate(spec), user=session.get(User, owner[0]),
                                         priority=priority, settings=fleet.settings)
            ids.append(run.id)
    fleet.created.extend(ids)
    return ids


def _all_end(fleet: Fleet, run_ids: list[int], timeout: float = 240) -> list[Run]:
    wait_for(lambda: all(fleet.run(r).status in ENDED for r in run_ids), timeout,
             lambda: f"runs not ended: {[(r, fleet.run(r).status) for r in run_ids]}\n{fleet.logs()}", every=0.5)
    runs = [fleet.run(r) for r in run_ids]
    assert [r.status for r in runs] == ["succeeded"] * len(runs), [(r.id, r.error_code, r.error_message)
                                                                   for r in runs]
    return runs


def test_another_users_first_run_and_a_raised_priority_go_before_a_users_backlog(fleet: Fleet) -> None:
    a, b, admin = _user(fleet), _user(fleet), _user(fleet, admin=True)
    fleet.start("w1")  # one worker slot
    fleet.wait_ready("w1")
    first = _queue(fleet, a)[0]
    wait_for(lambda: fleet.run(first).status != "queued", 60, lambda: f"run {first} not started:\n{fleet.logs()}")
    backlog = _queue(fleet, a, 4)  # A's 2nd to 5th, while A's first trains
    b_run = _queue(fleet, b)[0]  # B's first, queued after A's backlog
    urgent = _queue(fleet, admin, priority=5)[0]  # an admin's raised priority, queued last
    runs = _all_end(fleet, [first, *backlog, b_run, urgent])
    order = [r.id for r in sorted(runs, key=lambda r: r.started_at)]
    assert order == [first, urgent, b_run, *backlog], order
    assert all(r.attempts == 1 for r in runs)


def test_running_quota_holds_and_waiting_runs_start_as_slots_free(fleet: Fleet) -> None:
    limited = _user(fleet, max_running_runs=1)
    other = _user(fleet)
    fleet.start("w1", concurrency=2)  # two slots, but the limited user may use one
    fleet.wait_ready("w1")
    mine = _queue(fleet, limited, 3)
    theirs = _queue(fleet, other)[0]
    runs = {r.id: r for r in _all_end(fleet, [*mine, theirs])}
    spans = sorted((runs[r].started_at, runs[r].finished_at) for r in mine)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two of the limited user's runs trained at once: {spans}"
    assert runs[theirs].started_at < spans[1][0], "the other user's run waited behind the limited user's"


def _cli(settings, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    environ = {**os.environ, "DATABASE_URL": settings.resolved_database_url,
               "LORASTUDIO_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=ROOT, timeout=120)


def test_set_quota_on_the_command_line_shows_on_the_account_page_and_api(app, settings) -> None:  # noqa: ANN001
    name = f"q{uuid.uuid4().hex[:8]}"
    account = create_account(app.state.resources, name)
    done = _cli(settings, "users", "set-quota", name, "--queued", "4", "--running", "1", "--storage", "10GB")
    assert done.returncode == 0, done.stderr
    assert f"{name}: queued runs 0/4, running runs 0/1, storage " in done.stdout and "/10.0 GB" in done.stdout
    bad = _cli(settings, "users", "set-quota", name, "--storage", "lots")
    assert bad.returncode == 1 and "max_storage_bytes" in bad.stderr and "10GB" in bad.stderr
    with TestClient(app, headers=account.headers) as client:
        me = client.get("/api/me").json()
        assert me["queued_runs"]["limit"] == 4 and me["running_runs"]["limit"] == 1
        assert me["storage_bytes"]["limit"] == 10 * 1000**3
    with TestClient(app) as browser:
        assert log_in(browser, name, account.password)
        page = browser.get("/account").text
        assert 'id="quotas"' in page and "10.0 GB" in page
    reset = _cli(settings, "users", "set-quota", name, "--queued", "default", "--running", "0")
    assert reset.returncode == 0 and "queued runs 0/no limit, running runs 0/no limit" in reset.stdout
