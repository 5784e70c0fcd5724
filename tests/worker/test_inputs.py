"""A training job's inputs: the spec as submitted, beside where this worker finds its model and data."""

from __future__ import annotations

import json
from pathlib import Path

from app.core.models import Dataset, Run, RunStatus
from worker.jobs.inputs import export_training_inputs
from worker.planning.inputs import TrainingInputs
from worker.planning.reports import FinalNumbers
from worker.planning.spec import RunSpec
from worker.trainer.artifacts import model_card


def _run(session, ids: dict) -> Run:  # noqa: ANN001
    spec = RunSpec.model_validate({"name": "card", "model": {"base_model": ids["model"]},
                                   "data": {"dataset_id": ids["dataset_id"]}})
    run = Run(name="card", status=RunStatus.running, method="lora", spec=spec.model_dump(mode="json"),
              dataset_id=ids["dataset_id"], base_model_id=ids["model_id"])
    session.add(run)
    session.flush()
    return run


def test_the_spec_is_passed_untouched_and_the_inputs_say_where_things_are(session, ids: dict, tmp_path: Path) -> None:
    run = _run(session, ids)
    files = export_training_inputs(session, run.id, tmp_path)
    assert json.loads(files.spec.read_text()) == run.spec  # the studio's names, no worker-local path
    inputs = TrainingInputs.model_validate_json(files.inputs.read_text())
    dataset = session.get(Dataset, ids["dataset_id"])
    assert Path(inputs.model_ref).is_dir() and inputs.model_ref != ids["model"]
    rows = [json.loads(line) for line in Path(inputs.data_path).read_text().splitlines()]
    assert rows == [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    origin = inputs.provenance
    assert (origin.studio_run_id, origin.dataset, origin.dataset_sha256, origin.model_name) == (
        run.id, dataset.name, dataset.sha256, ids["model"])
    assert files.resume is None and files.argv()[-2:] == ["--out", str(tmp_path / "out")]


def test_the_model_card_names_the_studio_dataset_not_a_worker_path(session, ids: dict, tmp_path: Path) -> None:
    run, workdir = _run(session, ids), tmp_path / "work"
    workdir.mkdir()
    files = export_training_inputs(session, run.id, workdir)
    inputs = TrainingInputs.model_validate_json(files.inputs.read_text())
    final = FinalNumbers(train_loss=0.5, steps=2, tokens_seen=10)
    card = model_card(RunSpec.model_validate(run.spec), inputs, final, {"torch": "x"})
    dataset = session.get(Dataset, ids["dataset_id"])
    assert f"'{dataset.name}', 1 rows (sha256 `{dataset.sha256}`" in card and f"LoRA Studio run {run.id}" in card
    assert inputs.data_path not in card and str(workdir) not in card
