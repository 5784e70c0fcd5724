"""Quotas and priorities over HTTP: a run past the queued-runs quota, an upload or a run past the storage quota,
and a raised priority from a non-admin are refused with a clear 4xx and store nothing; GET /api/me shows them."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from app.core.models import Dataset, Run, User
from tests.support.accounts import create_account

ROW = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _spec(model: str, dataset_id: int) -> dict:
    return {"model": {"base_model": model}, "data": {"dataset_id": dataset_id}, "training": {"max_steps": 2}}


def _member(client, resources, session, **quota: int) -> tuple[dict, int]:
    """A non-admin with quotas and a dataset of their own: (their headers, the dataset id)."""
    account = create_account(resources)
    user = session.get(User, account.id)
    for column, value in quota.items():
        setattr(user, column, value)
    session.commit()
    upload = client.post("/api/datasets", files={"file": ("c.jsonl", json.dumps(ROW).encode())},
                         headers=account.headers)
    assert upload.status_code == 201, upload.text
    return account.headers, upload.json()["id"]


def test_queued_runs_quota_refuses_the_next_run(client, ids, resources, session) -> None:
    headers, dataset_id = _member(client, resources, session, max_queued_runs=2)
    spec = _spec(ids["model"], dataset_id)
    assert [client.post("/api/runs", json=spec, headers=headers).status_code for _ in range(2)] == [201, 201]
    refused = client.post("/api/runs", json=spec, headers=headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "queued_runs_quota" and "max_queued_runs" in error["message"]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Run).where(Run.dataset_id == dataset_id)) == 2
    me = client.get("/api/me", headers=headers).json()
    assert me["queued_runs"] == {"limit": 2, "used": 2} and me["running_runs"]["limit"] is None


def test_storage_quota_refuses_an_upload_and_then_a_run(client, ids, resources, session) -> None:
    headers, dataset_id = _member(client, resources, session)
    me = client.get("/api/me", headers=headers).json()
    used = me["storage_bytes"]["used"]
    assert used > 0 and me["storage_bytes"]["limit"] is None
    user_id = session.scalar(select(Dataset.owner_id).where(Dataset.id == dataset_id))
    session.get(User, user_id).max_storage_bytes = used + 10  # no room for another upload
    session.commit()
    big = "\n".join(json.dumps(ROW) for _ in range(5)).encode()
    upload = client.post("/api/datasets", files={"file": ("big.jsonl", big)}, headers=headers)
    assert upload.status_code == 413, upload.text
    error = upload.json()["error"]
    assert error["code"] == "storage_quota" and "max_storage_bytes" in error["message"]
    session.get(User, user_id).max_storage_bytes = used  # full
    session.commit()
    run = client.post("/api/runs", json=_spec(ids["model"], dataset_id), headers=headers)
    assert run.status_code == 409 and run.json()["error"]["code"] == "storage_quota", run.text


def test_only_admins_raise_priority(client, ids, resources, session) -> None:
    headers, dataset_id = _member(client, resources, session)
    spec = _spec(ids["model"], dataset_id)
    raised = client.post("/api/runs?priority=5", json=spec, headers=headers)
    assert raised.status_code == 403 and raised.json()["error"]["field"] == "priority", raised.text
    lowered = client.post("/api/runs?priority=-3", json=spec, headers=headers)
    assert lowered.status_code == 201 and lowered.json()["priority"] == -3
    assert client.post("/api/runs?priority=1000", json=_spec(ids["model"], ids["dataset_id"])).status_code == 422
    run_id = lowered.json()["id"]
    assert client.post(f"/api/runs/{run_id}/priority", json={"priority": 7}, headers=headers).status_code == 403
    by_admin = client.post(f"/api/runs/{run_id}/priority", json={"priority": 7})
    assert by_admin.status_code == 200 and by_admin.json()["priority"] == 7
    client.post(f"/api/runs/{run_id}/cancel")
    finished = client.post(f"/api/runs/{run_id}/priority", json={"priority": 1})
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "run_not_queued"
