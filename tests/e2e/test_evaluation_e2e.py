"""An evaluation end to end: queued over HTTP, computed by the real worker (Celery on Redis, the job runner, a
child generating with the tiny model and a real adapter), then read with `lorastudio eval run --follow`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.core.models import BaseModelEntry, Run
from tests.e2e.conftest import LiveStudio
from tests.support.adapters import make_adapter, store_adapter

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_eval_run_follow_prints_the_report_of_a_worker_computed_evaluation(
        live_studio: LiveStudio, studio_objects: dict, resources, tiny_model_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    ref = store_adapter(resources, make_adapter(tiny_model_dir, tmp_path / "adapter", seed=3))
    with session_scope(resources.session_factory) as session:
        base = session.scalars(select(BaseModelEntry).where(BaseModelEntry.name == studio_objects["model"])).one()
        session.get(Run, ref.run_id).base_model_id = base.id
    env = {**os.environ, "LORASTUDIO_SERVER": live_studio.url, "LORASTUDIO_TOKEN": live_studio.token}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "eval", "run", "--dataset", str(studio_objects["dataset_id"]),
         "--model", f"run-{ref.run_id}", "--scorer", "contains", "--scorer", "overlap", "--max-examples", "4",
         "--max-new-tokens", "4", "--follow"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr + live_studio.worker_log.read_text()[-3000:]
    assert f"adapter sha256 {ref.sha256}" in done.stdout and "(succeeded)" in done.stdout
    assert "eval set: 4 examples" in done.stdout and "contains: base" in done.stdout
    evaluation_id = done.stdout.split()[1]
    shown = live_studio.http.get(f"/api/evaluations/{evaluation_id}").json()
    assert shown["status"] == "succeeded" and shown["summary"]["adapter_sha256_applied"] == [ref.sha256]
    assert shown["examples_total"] == 4
