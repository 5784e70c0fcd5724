"""The fair claim's order (priority, then the owner with the fewest running runs, then the owner served longest
ago, then each owner's oldest), the running-runs quota it keeps, messages as tokens (passed on, parked, released),
and the quotas refused at creation. On the real database: SQLite, and PostgreSQL with LORASTUDIO_TEST_DB=postgresql."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import StudioError
from app.core.models import Artifact, Blob, Run, RunStatus, User
from app.core.repositories import runs as runs_repo
from app.core.services import quotas
from app.core.services import runs as run_service
from tests.support.rows import insert_run

T0 = utcnow() - timedelta(hours=1)


@pytest.fixture(autouse=True)
def _only_this_tests_runs(session) -> None:
    """Runs other tests left queued (committed ones, in a shared database) are out of the way, until the rollback."""
    session.execute(update(Run).where(Run.status.in_([RunStatus.queued, RunStatus.running]))
                    .values(status=RunStatus.cancelled))


def _user(session, **quota: int | None) -> User:
    user = User(username=f"u-{uuid.uuid4().hex[:10]}", password_hash="x", **quota)
    session.add(user)
    session.flush()
    return user


def _queue(session, owner: User | None, count: int, *, priority: int = 0, start: int = 0) -> list[int]:
    """count queued runs of owner, created one second apart from T0 + start seconds."""
    return [insert_run(session, status=RunStatus.queued, owner_id=owner.id if owner else None, priority=priority,
                       created_at=T0 + timedelta(seconds=start + i), dispatched_to="redis-1") for i in range(count)]


def _claim(session, default_running: int = 0) -> int | None:
    return runs_repo.claim_fairest(session, default_running, started_at=utcnow(), worker="w@host")


def test_every_users_first_run_goes_before_anyones_second(session) -> None:
    a, b, c = _user(session), _user(session), _user(session)
    a_runs = _queue(session, a, 5)  # A queued five first
    b_runs = _queue(session, b, 1, start=10)
    c_runs = _queue(session, c, 2, start=20)
    assert runs_repo.queued_order(session, 0) == [a_runs[0], b_runs[0], c_runs[0], a_runs[1], c_runs[1],
                                                  *a_runs[2:]]
    assert session.get(Run, a_runs[1]).status == RunStatus.queued  # the pretend claims were undone


def test_an_owner_with_a_run_going_waits_behind_one_without(session) -> None:
    a, b = _user(session), _user(session)
    a_runs = _queue(session, a, 5)
    assert _claim(session) == a_runs[0]  # one worker slot: A's first starts
    b_run = _queue(session, b, 1, start=10)[0]  # B queues later, while A's first trains
    assert _claim(session) == b_run  # before A's second and third
    assert _claim(session) == a_runs[1]


def test_running_quota_leaves_the_owners_runs_queued(session) -> None:
    limited, other = _user(session, max_running_runs=2), _user(session)
    mine = _queue(session, limited, 4)
    assert [_claim(session), _claim(session)] == mine[:2]
    assert _claim(session) is None  # two running: the quota
    theirs = _queue(session, other, 1, start=10)[0]
    assert _claim(session) == theirs
    session.execute(update(Run).where(Run.id == mine[0]).values(status=RunStatus.succeeded))
    assert _claim(session) == mine[2]


def test_studio_default_running_quota_and_a_users_own_override(session) -> None:
    default, unlimited = _user(session), _user(session, max_running_runs=0)
    capped = _queue(session, default, 3)
    free = _queue(session, unlimited, 3, start=10)
    assert runs_repo.queued_order(session, 1) == [capped[0], free[0], free[1], free[2]]


def test_priority_first_then_fairness(session) -> None:
    a, b, admin = _user(session), _user(session), _user(session)
    low = _queue(session, a, 1, priority=-5)[0]  # A lowered it: after everything else
    a_runs = _queue(session, a, 2, start=5)
    urgent = _queue(session, admin, 1, priority=10, start=20)[0]
    b_run = _queue(session, b, 1, start=30)[0]
    assert runs_repo.queued_order(session, 0) == [urgent, a_runs[0], b_run, a_runs[1], low]


def test_runs_nobody_owns_queue_as_one_owner(session) -> None:
    a = _user(session)
    orphans = _queue(session, None, 2)
    mine = _queue(session, a, 1, start=10)
    order = runs_repo.queued_order(session, 0)
    assert set(order[:2]) == {orphans[0], mine[0]} and order[2] == orphans[1]  # turns, as any owner's


def test_a_message_starts_the_fairest_run_and_the_named_one_takes_its_message(session) -> None:
    a = _user(session)
    first = _queue(session, a, 1)[0]
    named = _queue(session, a, 1, start=5)[0]
    session.execute(update(Run).where(Run.id == first).values(dispatched_to=None))  # its send failed
    claimed = run_service.claim_next(session, named, "w@host")
    assert claimed is not None and claimed[0] == first and claimed[1].attempt == 1
    session.expire_all()
    assert session.get(Run, named).dispatched_to is None  # it now waits on the janitor's send, as first did
    assert session.get(Run, first).status == RunStatus.running and session.get(Run, first).worker == "w@host"


def test_a_message_that_starts_nothing_parks_a_run_released_when_a_slot_frees(session) -> None:
    limited = _user(session, max_running_runs=1)
    going, waiting = _queue(session, limited, 2)
    assert run_service.claim_next(session, going, "w@host")[0] == going
    assert run_service.claim_next(session, waiting, "w@host") is None
    session.expire_all()
    assert session.get(Run, waiting).dispatched_to == runs_repo.PARKED
    assert runs_repo.undelivered_queued(session, "redis-2", utcnow()) == []  # not sent again while parked
    assert run_service.release_parked(session, limited.id) == []  # the owner's slot is still taken
    session.info.pop("pending_jobs", None)
    assert run_service.finish_run(session, going, RunStatus.succeeded, {"steps": 1})
    session.expire_all()
    assert session.get(Run, waiting).dispatched_to is None
    assert [kwargs for _, kwargs, _, _ in session.info["pending_jobs"]] == [{"run_id": waiting}]
    session.info.pop("pending_jobs")


def test_janitor_releases_parked_runs_once_the_quota_allows(session) -> None:
    limited = _user(session, max_running_runs=1)
    going, waiting = _queue(session, limited, 2)
    run_service.claim_next(session, going, "w@host")
    run_service.claim_next(session, waiting, "w@host")
    assert run_service.release_all_parked(session) == []
    limited.max_running_runs = 2  # an admin raised it
    session.flush()
    assert run_service.release_all_parked(session) == [waiting]
    session.info.pop("pending_jobs")


def test_resumed_run_is_claimed_as_a_later_attempt(session) -> None:
    run_id = insert_run(session, status=RunStatus.queued, attempts=1, dispatched_to="redis-1")
    claimed = run_service.claim_next(session, run_id, "w2@host")
    assert claimed is not None and claimed[0] == run_id and claimed[1].attempt == 2


def test_queued_runs_quota_is_refused_naming_it(session) -> None:
    user = _user(session, max_queued_runs=2)
    _queue(session, user, 2)
    with pytest.raises(StudioError) as refused:
        quotas.check_can_queue(session, user, Settings())
    assert refused.value.kind == "conflict" and refused.value.code == "queued_runs_quota"
    assert "max_queued_runs" in refused.value.message and "set-quota" in refused.value.message
    quotas.check_can_queue(session, _user(session, max_queued_runs=3), Settings())  # none queued: fine


def test_storage_counts_each_blob_once_and_refuses_beyond_the_quota(session) -> None:
    user = _user(session, max_storage_bytes=1000)
    run_id = _queue(session, user, 1)[0]
    blob = Blob(sha256=uuid.uuid4().hex, size=600, media_type="x")
    session.add(blob)
    session.flush()
    session.add_all([Artifact(run_id=run_id, kind="adapter", name=n, blob_id=blob.id, size=600) for n in "ab"])
    session.flush()
    assert quotas.storage_used(session, user.id) == 600  # the same bytes under two names: stored once
    quotas.check_storage(session, user, 400, Settings())
    with pytest.raises(StudioError) as refused:
        quotas.check_storage(session, user, 401, Settings())
    assert refused.value.kind == "too_large" and refused.value.code == "storage_quota"
    assert quotas.limits_of(user, Settings(quota_storage_bytes=5)).storage_bytes == 1000  # their own wins
    assert quotas.limits_of(_user(session), Settings(quota_storage_bytes=5)).storage_bytes == 5


def test_sizes_parse_with_units() -> None:
    assert quotas.parse_bytes("10GB") == 10 * 1000**3
    assert quotas.parse_bytes("2 GiB") == 2 * 1024**3
    assert quotas.parse_bytes("1500") == 1500
    with pytest.raises(ValueError, match="10GB"):
        quotas.parse_bytes("ten")
