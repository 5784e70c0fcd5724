"""Runs over HTTP without a worker: validation, cancel in each state, SSE history and resume."""

from __future__ import annotations

import json

import pytest

from app.core.models import MetricPoint, Run, RunStatus


def _spec(ids: dict, **training) -> dict:
    return {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}, "training": training}


def test_create_run_stores_spec_and_queues(client, ids) -> None:
    response = client.post("/api/runs", json=_spec(ids, max_steps=5))
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "queued" and run["spec"]["training"]["max_steps"] == 5
    assert run["spec"]["lora"]["r"] == 16  # defaults are stored, so the run can be reproduced


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"lora": {"r": 0}}, "lora.r"), ({"lora": {"alpha": -1}}, "lora.alpha"),
     ({"training": {"learning_rate": 0}}, "training.learning_rate"), ({"method": "int3"}, "method"),
     ({"lora": {"target_modules": []}}, "lora.target_modules"), ({"surprise": 1}, "surprise")],
)
def test_invalid_spec_names_the_field(client, ids, patch: dict, field: str) -> None:
    spec = _spec(ids)
    for key, value in patch.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    response = client.post("/api/runs", json=spec)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field, response.json()


def test_unknown_model_or_dataset_is_refused(client, ids) -> None:
    bad_model = client.post("/api/runs", json={**_spec(ids), "model": {"base_model": "nobody/nothing"}})
    assert bad_model.status_code == 422 and bad_model.json()["error"]["code"] == "model_not_registered"
    bad_data = client.post("/api/runs", json={**_spec(ids), "data": {"dataset_id": 999999}})
    assert bad_data.status_code == 422 and bad_data.json()["error"]["field"] == "data.dataset_id"


def test_cancel_queued_then_finished(client, ids) -> None:
    run_id = client.post("/api/runs", json=_spec(ids)).json()["id"]
    first = client.post(f"/api/runs/{run_id}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    second = client.post(f"/api/runs/{run_id}/cancel")
    assert second.status_code == 409 and second.json()["error"]["code"] == "run_finished"
    assert client.get(f"/api/runs/{run_id}/adapter").status_code == 409


def test_missing_run_is_404_json(client) -> None:
    response = client.get("/api/runs/987654")
    assert response.status_code == 404 and response.json()["error"]["code"] == "run_not_found"


def _finished_run_with_points(resources, ids, n: int) -> int:
    with resources.session_factory() as session:
        run = Run(name="sse", status=RunStatus.succeeded, method="lora", spec={}, dataset_id=ids["dataset_id"],
                  base_model_id=ids["model_id"])
        session.add(run)
        session.flush()
        session.add_all(MetricPoint(run_id=run.id, seq=i, step=i, values={"loss": 1.0 / i}) for i in range(1, n + 1))
        session.commit()
        return run.id


def _sse_ids(client, run_id: int, last_event_id: str | None = None) -> tuple[list[int], list[str]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    ids, statuses = [], []
    with client.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("data: ") and '"status"' in line and '"type": "status"' in line:
                statuses.append(json.loads(line[6:])["status"])
    return ids, statuses


def test_sse_sends_history_then_resumes_without_gaps_or_duplicates(client, resources, ids) -> None:
    run_id = _finished_run_with_points(resources, ids, 12)
    all_ids, statuses = _sse_ids(client, run_id)
    assert all_ids == list(range(1, 13)) and statuses == ["succeeded"]
    resumed, _ = _sse_ids(client, run_id, last_event_id="7")
    assert resumed == list(range(8, 13))


def test_an_unknown_status_filter_is_a_422_naming_the_field(client) -> None:
    response = client.get("/api/runs", params={"status": "bogus\x00"})  # PostgreSQL refuses NUL in text: no 500
    assert response.status_code == 422 and response.json()["error"]["field"] == "status"
    assert client.get("/api/runs", params={"status": "queued"}).status_code == 200
