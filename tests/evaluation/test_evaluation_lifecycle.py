"""An evaluation's life past its start: cancelled while queued (never runs) or while running (its child stopped,
nothing stored), taken back from a worker that vanished (queued again, failed after max_attempts), and deleted
once finished (audited; refused while it is live)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope, utcnow
from app.core.models import AuditEntry, Evaluation
from app.core.services import evaluations as evaluation_service
from app.core.services.recovery import reap_lost_evaluations
from tests.evaluation.conftest import ROWS, upload
from tests.support.accounts import create_account
from worker.jobs.evaluation import evaluate

LONG_ROWS = [{"prompt": f"Tell me a long story about the number {n}.", "completion": "x"} for n in range(64)]


def _until(check, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def _status(resources, evaluation_id: int) -> Evaluation:  # noqa: ANN001
    with session_scope(resources.session_factory) as session:
        evaluation = session.get(Evaluation, evaluation_id)
        session.expunge(evaluation)
        return evaluation


def test_a_queued_evaluation_is_cancelled_and_never_runs(client, resources, tiny) -> None:  # noqa: ANN001
    created = client.post("/api/evaluations", json={"dataset_id": upload(client, ROWS), "model": tiny["name"]})
    evaluation_id = created.json()["id"]
    cancelled = client.post(f"/api/evaluations/{evaluation_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"]
    # A worker (the session's live studio, where one runs) may have taken it first: then it stops soon after.
    _until(lambda: _status(resources, evaluation_id).status == "cancelled")
    with session_scope(resources.session_factory) as session:
        assert evaluation_service.claim_evaluation(session, evaluation_id) is None  # a late delivery skips it
    again = client.post(f"/api/evaluations/{evaluation_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "evaluation_finished"
    page = client.get(f"/evaluations/{evaluation_id}").text
    assert 'id="evaluation-cancelled"' in page and 'id="delete-evaluation"' in page


@pytest.mark.committed  # the job runs in a thread of its own, on connections of its own
def test_a_running_evaluation_stops_on_cancel_and_stores_nothing(client, resources, tiny) -> None:  # noqa: ANN001
    spec = evaluation_service.EvaluationSpec(dataset_id=upload(client, LONG_ROWS), model=tiny["name"],
                                             max_new_tokens=512, max_examples=64)
    with session_scope(resources.session_factory) as session:
        evaluation_id = evaluation_service.create_evaluation(session, resources.settings, None, spec).id
        session.info.pop("pending_jobs")  # not sent: no other worker may take it, this test runs its job
    with session_scope(resources.session_factory) as session:
        attempt = evaluation_service.claim_evaluation(session, evaluation_id)
    assert attempt == 1
    outcome: list[str] = []
    job = threading.Thread(target=lambda: outcome.append(evaluate(resources, evaluation_id, attempt)))
    job.start()
    _until(lambda: _status(resources, evaluation_id).progress_total > 0, 120)  # the child is generating
    assert 'id="cancel-evaluation"' in client.get(f"/evaluations/{evaluation_id}").text
    asked = client.post(f"/api/evaluations/{evaluation_id}/cancel").json()
    assert asked["status"] == "running" and asked["cancel_requested"]
    started = time.monotonic()
    job.join(60)
    assert outcome == ["cancelled"] and time.monotonic() - started < 30
    stopped = client.get(f"/api/evaluations/{evaluation_id}").json()
    assert stopped["status"] == "cancelled" and stopped["examples_total"] == 0 and stopped["summary"] == {}
    assert stopped["progress_done"] < stopped["progress_total"]  # stopped part way, not after finishing


def _running(session, attempts: int, beat_s_ago: float, **fields) -> int:  # noqa: ANN001, ANN003
    evaluation = Evaluation(model="m", base_name="m", scorers=["exact"], params={}, status="running",
                            attempts=attempts, heartbeat_at=utcnow() - timedelta(seconds=beat_s_ago),
                            started_at=utcnow(), **fields)
    session.add(evaluation)
    session.flush()
    return evaluation.id


def test_a_lost_workers_evaluation_is_queued_again_then_failed(session) -> None:  # noqa: ANN001
    beating = _running(session, 1, 2)
    lost = _running(session, 1, 120)
    lost_last_time = _running(session, 3, 120)
    lost_while_cancelling = _running(session, 1, 120, cancel_requested=True)
    outcomes = reap_lost_evaluations(session, timedelta(seconds=30), max_attempts=3)
    assert outcomes == {lost: "queued", lost_last_time: "failed", lost_while_cancelling: "cancelled"}
    assert ("evaluations.run", {"evaluation_id": lost}, None, None) in session.info["pending_jobs"]  # sent at commit
    statuses = dict(session.execute(select(Evaluation.id, Evaluation.status).where(Evaluation.id.in_(
        [beating, lost, lost_last_time, lost_while_cancelling]))).all())
    assert statuses[beating] == "running" and statuses[lost] == "queued"
    assert "on each of 3 attempts" in session.get(Evaluation, lost_last_time).error
    # The lost attempt, should its job still be alive, learns it lost the evaluation and stores nothing.
    assert evaluation_service.claim_evaluation(session, lost) == 2
    assert evaluation_service.beat(session, lost, 1) == "lost"
    assert evaluation_service.beat(session, lost, 2) == "go"


def test_a_finished_evaluation_is_deleted_and_audited_a_live_one_is_refused(app, client, resources,  # noqa: ANN001
                                                                           tiny) -> None:
    body = {"dataset_id": upload(client, ROWS), "model": tiny["name"]}
    done = client.post("/api/evaluations", json=body).json()["id"]
    client.post(f"/api/evaluations/{done}/cancel")
    _until(lambda: _status(resources, done).status == "cancelled")
    other = create_account(resources)
    with TestClient(app, headers=other.headers) as theirs:
        assert theirs.delete(f"/api/evaluations/{done}").status_code == 404
    assert client.delete(f"/api/evaluations/{done}").status_code == 204
    assert client.get(f"/api/evaluations/{done}").status_code == 404
    with session_scope(resources.session_factory) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "evaluation.delete")
                                .order_by(AuditEntry.id.desc())).first()
        assert entry is not None and f"evaluation {done}" in entry.target
        live = _running(session, 1, 0)
    refused = client.delete(f"/api/evaluations/{live}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["error"]["message"]
    assert client.get(f"/api/evaluations/{live}").status_code == 200
    with session_scope(resources.session_factory) as session:
        session.get(Evaluation, live).status = "failed"
    page = client.post(f"/evaluations/{live}/delete", follow_redirects=False)
    assert page.status_code == 303 and client.get(f"/api/evaluations/{live}").status_code == 404
