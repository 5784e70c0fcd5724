"""The export job kind without its child: prepare writes the child's inputs (the version's PEFT files checked against
its hash, the base, the stem, prompts from the run's samples or the defaults), reports become progress, and conclude
stores a Result's files or fails with the Error's reason (the real child's test is worker/export's own)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.errors import StudioError
from app.core.models import AdapterExport, AdapterExportFile, AdapterVersion, GenerationSample
from app.core.services import exports as export_service
from tests.support.generation_fixtures import adapter_run
from worker.jobs.export import DEFAULT_PROMPTS, ExportJob
from worker.planning.reports import Error, Log, Metric, Result, Started


class _Exited:
    """A child that has already exited with returncode."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def wait(self) -> int:
        return self.returncode

    def stderr_tail(self) -> str:
        return "Traceback: boom"


def _claimed_export(as_member, session, ids, member, fmt: str = "gguf") -> tuple[int, int]:  # noqa: ANN001
    run_id = adapter_run(session, ids["model_id"], ids["dataset_id"], member.id)
    assert as_member.post("/api/adapters", json={"name": "jobbed", "run_id": run_id}).status_code == 201
    export_id = as_member.post("/api/adapters/jobbed/versions/1/exports", json={"format": fmt}).json()["id"]
    assert export_service.claim_export(session, export_id) == 1
    session.commit()
    return export_id, run_id


def _export(session, export_id: int) -> AdapterExport:  # noqa: ANN001
    session.expire_all()
    return session.get(AdapterExport, export_id)


def test_prepare_writes_the_childs_inputs(as_member, session, ids, member, resources, tmp_path: Path) -> None:  # noqa: ANN001
    export_id, run_id = _claimed_export(as_member, session, ids, member)
    argv = ExportJob(resources, export_id, 1).prepare(tmp_path)
    assert argv[-4:] == ["worker.export", str(tmp_path / "inputs.json"), "--out", str(tmp_path / "out")]
    inputs = json.loads((tmp_path / "inputs.json").read_text())
    version = session.scalars(select(AdapterVersion).where(AdapterVersion.run_id == run_id)).one()
    assert (inputs["format"], inputs["stem"], inputs["adapter_sha256"]) == ("gguf", "jobbed-v1", version.sha256)
    assert inputs["base"]["name"] == ids["model"] and inputs["prompts"] == list(DEFAULT_PROMPTS)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json",
                                                                          "adapter_model.safetensors"]
    session.add_all(GenerationSample(run_id=run_id, step=0, kind="base", prompt_index=i, prompt=p, output="",
                                     seconds=0.1, train_seconds=0.0) for i, p in enumerate(["Say hi.", "Count."]))
    session.commit()
    ExportJob(resources, export_id, 1).prepare(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "inputs.json").read_text())["prompts"] == ["Say hi.", "Count."]


def test_reports_become_progress_and_a_result_stores_the_files(as_member, session, ids, member,  # noqa: ANN001
                                                               resources, tmp_path: Path) -> None:
    export_id, _ = _claimed_export(as_member, session, ids, member)
    job = ExportJob(resources, export_id, 1)
    job.handle([Started(device="cpu", total_steps=3), Log(message="converting to GGUF f16"), Metric(step=1)])
    job._record_progress(force=True)
    shown = _export(session, export_id)
    assert (shown.stage, shown.progress_done, shown.progress_total) == ("converting to GGUF f16", 1, 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "jobbed-v1.gguf").write_bytes(b"GGUF data")
    files = [{"name": "jobbed-v1.gguf", "size": 9, "sha256": hashlib.sha256(b"GGUF data").hexdigest()}]
    job.handle([Metric(step=3), Result(data={"files": files, "report": {"checks": {"merged": {"top1": 1.0}}}})])
    assert job.conclude(_Exited(0), tmp_path) == "succeeded"
    assert _export(session, export_id).status == "succeeded"
    stored = session.scalars(select(AdapterExportFile).where(AdapterExportFile.export_id == export_id)).all()
    assert [(f.name, f.size, f.sha256) for f in stored] == [(f["name"], f["size"], f["sha256"]) for f in files]


def test_an_error_or_a_crash_fails_the_export_with_its_reason(as_member, session, ids, member,  # noqa: ANN001
                                                              resources, tmp_path: Path) -> None:
    export_id, _ = _claimed_export(as_member, session, ids, member)
    job = ExportJob(resources, export_id, 1)
    job.handle([Error(code="export_unverified", message="The GGUF agreed on 41% of tokens, below 90%.")])
    assert job.conclude(_Exited(1), tmp_path) == "failed"
    shown = _export(session, export_id)
    assert (shown.status, shown.error) == ("failed", "The GGUF agreed on 41% of tokens, below 90%.")
    other = as_member.post("/api/adapters/jobbed/versions/1/exports", json={"format": "merged"}).json()["id"]
    export_service.claim_export(session, other)
    session.commit()
    assert ExportJob(resources, other, 1).conclude(_Exited(-9), tmp_path) == "failed"
    assert "code -9: Traceback: boom" in _export(session, other).error


def test_a_version_whose_base_is_gone_fails_with_the_reason(as_member, session, ids, member, resources,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    export_id, run_id = _claimed_export(as_member, session, ids, member)
    version = session.scalars(select(AdapterVersion).where(AdapterVersion.run_id == run_id)).one()
    version.base_model_id = None
    session.commit()
    job = ExportJob(resources, export_id, 1)
    with pytest.raises(StudioError) as refused:
        job.prepare(tmp_path)
    assert job.prepare_failed(refused.value) == "failed"
    assert "is gone" in _export(session, export_id).error


def test_the_celery_and_web_side_of_exports_import_no_training_library() -> None:
    code = ("import sys, worker.tasks.exports, worker.jobs.export, app.main; print(sorted(m for m in "
            "('torch', 'transformers', 'peft', 'gguf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
