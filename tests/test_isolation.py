"""Each database test runs in a transaction rolled back at its end: what one test commits, no other test sees.

The first two tests are mirror images: whichever runs second would find the other's dataset if a commit
outlived its test, so together they hold in either order (`-p no:randomly`, `-k`, or a shuffled run).
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from app.core.models import Dataset, Run, User

PROBE = f"isolation-probe-{uuid.uuid4().hex[:8]}"  # one name per test session
ROW = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


def _probes(client) -> int:  # noqa: ANN001
    """How many datasets named PROBE the app lists."""
    response = client.get("/api/datasets")
    assert response.status_code == 200, response.text
    return sum(1 for dataset in response.json() if dataset["name"] == PROBE)


def _upload(client) -> int:  # noqa: ANN001
    """A dataset named PROBE, uploaded (and committed) through the app; its id."""
    response = client.post("/api/datasets", files={"file": ("c.jsonl", ROW.encode())}, data={"name": PROBE})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_dataset_committed_by_one_test_is_gone_in_the_next(client) -> None:  # noqa: ANN001
    assert _probes(client) == 0
    _upload(client)
    assert _probes(client) == 1


def test_and_the_other_way_round(client) -> None:  # noqa: ANN001
    assert _probes(client) == 0
    _upload(client)
    assert _probes(client) == 1


def test_the_apps_commit_is_visible_to_the_test_session(client, session) -> None:  # noqa: ANN001
    before = session.scalar(select(func.count()).select_from(Dataset))
    dataset_id = _upload(client)
    session.rollback()  # "read fresh" must not undo the app's commit on the shared connection
    assert session.get(Dataset, dataset_id).name == PROBE
    assert session.scalar(select(func.count()).select_from(Dataset)) == before + 1


def test_a_queued_runs_dispatch_is_recorded_inside_the_test(client, session, ids) -> None:  # noqa: ANN001
    # The job is sent after the app's commit, and where it went is written on the test's connection.
    response = client.post("/api/runs", json={"model": {"base_model": ids["model"]},
                                              "data": {"dataset_id": ids["dataset_id"]}})
    assert response.status_code == 201, response.text
    assert session.get(Run, response.json()["id"]).dispatched_to


def test_the_admin_is_there_for_every_test(client, session, admin) -> None:  # noqa: ANN001
    assert session.get(User, admin.id).is_admin  # made once, committed before any test's transaction
    assert client.get("/api/datasets").status_code == 200
