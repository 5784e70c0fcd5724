"""The run page's under-training notice and its one-click clone with stronger settings."""

from __future__ import annotations

import re

from app.core.models import MetricPoint, Run, RunStatus

SHORT = {"name": "first try", "method": "lora",
         "model": {"base_model": ""},
         "data": {"dataset_id": 0, "eval_fraction": 0.0},
         "lora": {"r": 8, "alpha": 16, "target_modules": "attention"},
         "training": {"per_device_batch_size": 4, "num_epochs": 1, "learning_rate": 0.0002}}


def _ended_run(resources, ids: dict, losses: list[float], status: RunStatus = RunStatus.succeeded) -> int:
    spec = {**SHORT, "model": {"base_model": ids["model"]}, "data": {**SHORT["data"], "dataset_id": ids["dataset_id"]}}
    with resources.session_factory() as session:
        run = Run(name="first try", status=status, method="lora", spec=spec, dataset_id=ids["dataset_id"],
                  base_model_id=ids["model_id"])
        session.add(run)
        session.flush()
        for seq, loss in enumerate(losses, start=1):
            session.add(MetricPoint(run_id=run.id, seq=seq, step=seq, values={"loss": loss}))
        session.commit()
        return run.id


def test_a_run_whose_loss_barely_moved_says_so_and_offers_a_stronger_clone(client, resources, ids) -> None:
    run_id = _ended_run(resources, ids, [3.11, 3.06, 3.02, 2.99])
    page = client.get(f"/runs/{run_id}").text
    notice = re.search(r'<div class="problem learning-notice".*?</div>', page, re.S).group(0)
    assert "The adapter probably learned little" in notice and "3.11 → 3.02" in notice
    assert "1 optimizer step at lr 2e-4 on 1 row" in notice  # the ids fixture's dataset has one row
    changes = re.search(r'id="clone-stronger-changes">([^<]*)<', notice).group(1)
    assert "lora.target_modules all-linear" in changes and "training.num_epochs" in changes

    response = client.post(f"/runs/{run_id}/clone-stronger", follow_redirects=False)
    assert response.status_code == 303
    clone_id = int(response.headers["location"].rsplit("/", 1)[1])
    clone = client.get(f"/api/runs/{clone_id}").json()
    assert re.fullmatch(r"first try \(\d+\)", clone["name"]) and clone["status"] == "queued"
    spec = clone["spec"]
    assert spec["lora"]["target_modules"] == "all-linear" and spec["lora"]["r"] == 16
    assert spec["training"]["num_epochs"] > 1 and spec["data"]["dataset_id"] == ids["dataset_id"]


def test_a_run_that_learned_has_no_notice_and_no_stronger_clone(client, resources, ids) -> None:
    run_id = _ended_run(resources, ids, [2.2, 1.4, 0.8, 0.5])
    assert 'id="learning-notice"' not in client.get(f"/runs/{run_id}").text
    response = client.post(f"/runs/{run_id}/clone-stronger", follow_redirects=False)
    assert response.status_code == 409


def test_a_failed_run_gets_its_error_not_the_notice(client, resources, ids) -> None:
    run_id = _ended_run(resources, ids, [3.11, 3.10], status=RunStatus.failed)
    assert 'id="learning-notice"' not in client.get(f"/runs/{run_id}").text
