"""Two worker processes write metric points while the web app reads: no lost rows, no 'database is locked'.

Runs against SQLite (WAL + busy timeout) and PostgreSQL, as the suite runs on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import func, select

from app.core.models import MetricPoint, Run, RunStatus

WRITER = r'''
import sys
from app.core.config import Settings
from app.core.db import session_scope
from app.core.resources import Resources
from app.core.services.runs import record_metrics
from worker.planning.reports import Metric

run_id, batches, per_batch = (int(a) for a in sys.argv[1:4])
res = Resources(Settings())
seq = 0
for _ in range(batches):
    points = []
    for _ in range(per_batch):
        seq += 1
        points.append(Metric(step=seq, loss=1.0 / seq))
    with session_scope(res.session_factory) as session:  # one transaction per batch, as the job runner does
        record_metrics(session, run_id, points)
print("ok")
'''
ROOT = Path(__file__).resolve().parents[2]


def _running_run(resources, ids: dict) -> int:
    with resources.session_factory() as session:
        run = Run(name="w", status=RunStatus.running, method="lora", spec={}, dataset_id=ids["dataset_id"],
                  base_model_id=ids["model_id"])
        session.add(run)
        session.commit()
        return run.id


def test_two_writers_and_a_reader_lose_nothing(client, resources, settings, ids) -> None:
    runs = [_running_run(resources, ids) for _ in range(2)]
    batches, per_batch = 150, 4
    env = {**os.environ, "DATABASE_URL": settings.resolved_database_url, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(run_id), str(batches), str(per_batch)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for run_id in runs]
    read_errors: list[str] = []

    def read_while_writing() -> None:
        while any(w.poll() is None for w in writers):
            for run_id in runs:
                response = client.get(f"/api/runs/{run_id}/metrics")
                if response.status_code != 200:
                    read_errors.append(response.text)

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    outputs = [w.communicate(timeout=300) for w in writers]
    reader.join()
    for (out, err), writer in zip(outputs, writers, strict=True):
        assert writer.returncode == 0 and out.strip() == "ok", err[-2000:]
        assert "database is locked" not in err
    assert read_errors == []
    with resources.session_factory() as session:
        for run_id in runs:
            count = session.scalar(select(func.count()).where(MetricPoint.run_id == run_id))
            assert count == batches * per_batch
            assert session.get(Run, run_id).current_step == batches * per_batch
