"""Asking for the adapter of a run that has none says why, in the words of the run's state."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from app.core.db import utcnow
from app.core.models import Run


def _spec(ids: dict) -> dict:
    return {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}}


def _no_adapter(client, run_id: int) -> str:  # noqa: ANN001
    response = client.get(f"/api/runs/{run_id}/adapter")
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_adapter", response.text
    return response.json()["error"]["message"]


def test_a_run_cancelled_before_it_started_has_no_adapter_and_says_so(client, ids) -> None:  # noqa: ANN001
    run_id = client.post("/api/runs", json=_spec(ids)).json()["id"]
    assert "has not started yet" in _no_adapter(client, run_id)
    assert client.post(f"/api/runs/{run_id}/cancel").json()["status"] == "cancelled"
    message = _no_adapter(client, run_id)
    assert message == f"Run {run_id} was cancelled before it started, so it has no adapter."


@pytest.mark.parametrize(("state", "words"), [
    ({"status": "running", "started_at": utcnow()}, "is still training: its adapter is stored when it ends"),
    ({"status": "running", "started_at": utcnow(), "cancel_requested": True}, "is stopping"),
    ({"status": "failed", "started_at": utcnow(), "error_code": "diverged"}, "failed (diverged), so it has no adapter"),
    ({"status": "cancelled", "started_at": utcnow()}, "stopped before one was saved"),
    ({"status": "succeeded", "started_at": utcnow()}, "succeeded without storing an adapter"),
])
def test_the_refusal_matches_the_state(client, ids, session, state: dict, words: str) -> None:  # noqa: ANN001
    run_id = client.post("/api/runs", json=_spec(ids)).json()["id"]
    session.execute(update(Run).where(Run.id == run_id).values(**state))
    session.commit()
    message = _no_adapter(client, run_id)
    assert words in message and "succeeds or is cancelled" not in message, message
