"""A run whose worker stopped sending heartbeats is failed with a reason, once; live runs are left alone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.core.db import utcnow
from app.core.models import BaseModelEntry, Blob, Dataset, Run, RunEvent, RunStatus
from app.core.services.runs import reap_lost_runs


def _running_run(session, heartbeat_age_s: float) -> int:
    blob = Blob(sha256=f"reaper-{utcnow().timestamp()}-{heartbeat_age_s}", size=0, media_type="x")
    model = BaseModelEntry(name=f"m-{utcnow().timestamp()}-{heartbeat_age_s}", source="hub", ref="org/m")
    session.add_all([blob, model])
    session.flush()
    dataset = Dataset(name="d", filename="d.jsonl", file_type="jsonl", format="text", row_count=1, size_bytes=1,
                      sha256="0" * 64, blob_id=blob.id)
    session.add(dataset)
    session.flush()
    run = Run(name="r", status=RunStatus.running, method="lora", spec={}, dataset_id=dataset.id,
              base_model_id=model.id, heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age_s))
    session.add(run)
    session.flush()
    return run.id


def test_silent_run_is_failed_with_worker_lost(session) -> None:
    lost, alive = _running_run(session, 300), _running_run(session, 5)
    reaped = reap_lost_runs(session, timedelta(seconds=120))
    session.expire_all()  # the reaper updates rows with SQL; read them back from the database
    assert lost in reaped and alive not in reaped
    assert session.get(Run, lost).status == RunStatus.failed and session.get(Run, lost).error_code == "worker_lost"
    assert session.get(Run, lost).error_advice and session.get(Run, alive).status == RunStatus.running
    kinds = session.scalars(select(RunEvent.kind).where(RunEvent.run_id == lost)).all()
    assert kinds == ["failed"]
    assert lost not in reap_lost_runs(session, timedelta(seconds=120))  # once only
