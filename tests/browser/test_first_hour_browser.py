"""A newcomer's first hour in a real browser: a run whose loss barely moved says the adapter probably learned
little and clones itself with stronger settings in one click; the dataset doctor warns of unfilled {{placeholders}}
and of a chat template that slips in its own system prompt (a real worker computes the analysis)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from app.core.db import session_scope
from app.core.models import Run, RunStatus, User
from app.core.repositories import catalog
from app.core.resources import Resources
from app.core.services import runs as run_service
from tests.browser.conftest import screenshot
from tests.support.default_system_model import DEFAULT_SYSTEM_PROMPT, with_default_system_prompt
from tests.support.studio import LiveStudio, run_spec
from worker.planning.reports import Metric

pytestmark = pytest.mark.e2e
# LLaMA-Factory's identity rows as they ship: placeholders unfilled.
IDENTITY = [
    {"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "What is two plus two?", "input": "", "output": "Four."},
]


def test_an_under_trained_run_says_so_and_clones_itself_stronger(page, resources: Resources, admin,  # noqa: ANN001
                                                                 live_studio: LiveStudio,
                                                                 studio_objects: dict) -> None:
    spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", 2)  # 2 steps: a clone is quick
    spec |= {"name": "first try", "lora": {"r": 4, "alpha": 8, "target_modules": "attention"}}
    # Stored as it ended, not trained: the losses are what the notice reads.
    with session_scope(resources.session_factory) as session:
        owner = session.get(User, admin.id)
        run = Run(name="first try", status=RunStatus.succeeded, method="lora", spec=spec, owner_id=owner.id,
                  dataset_id=studio_objects["dataset_id"],
                  base_model_id=catalog.find_model(session, studio_objects["model"]).id)
        session.add(run)
        session.flush()
        run_id = run.id
        run_service.record_metrics(session, run_id, [Metric(step=1, loss=3.11), Metric(step=2, loss=3.02)])
    page.goto(f"/runs/{run_id}")
    notice = page.locator("#learning-notice")
    notice.wait_for()
    assert "The adapter probably learned little" in notice.inner_text()
    assert "3.11 → 3.06" in notice.inner_text()  # the first loss → the mean of the last few
    changes = page.inner_text("#clone-stronger-changes")
    assert "lora.target_modules all-linear" in changes and "lora.r 16" in changes
    screenshot(page, "under-training-notice")
    page.click("#clone-stronger")
    page.wait_for_url(lambda url: "/runs/" in url and not url.endswith(f"/runs/{run_id}"))
    clone_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    clone = live_studio.http.get(f"/api/runs/{clone_id}").json()
    assert re.fullmatch(r"first try \(\d+\)", clone["name"])  # (2), or later where earlier tests cloned too
    assert clone["spec"]["lora"]["target_modules"] == "all-linear" and clone["spec"]["lora"]["r"] == 16
    assert "Cloned from run" in page.inner_text("#run-timeline")
    # Two steps on the tiny model; let it end so the shared worker is idle for the next test.
    live_studio.wait_for(clone_id, {"succeeded", "failed", "cancelled"})


def test_the_doctor_warns_of_placeholders_and_a_default_system_prompt(page, live_studio: LiveStudio,  # noqa: ANN001
                                                                      tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    folder = with_default_system_prompt(tiny_model_dir, tmp_path / "smol")
    model = live_studio.http.post("/api/models", json={"name": f"smol-{time.time_ns()}", "ref": str(folder)})
    assert model.status_code == 201, model.text
    body = json.dumps(IDENTITY).encode()
    dataset = live_studio.http.post("/api/datasets", files={"file": ("identity.json", body)},
                                    data={"name": "identity-raw"})
    assert dataset.status_code == 201, dataset.text
    page.goto(f"/datasets/{dataset.json()['id']}")
    page.select_option("#doctor-base-model", model.json()["name"])
    page.fill("#doctor-max-length", "128")
    page.click("#doctor-submit")
    placeholders = page.locator('li.warning[data-code="unfilled_placeholders"]')
    placeholders.wait_for(timeout=120_000)  # the short-jobs worker renders every row, the page polls
    assert "{{name}} in 2 rows" in placeholders.inner_text() and "{{author}} in 2 rows" in placeholders.inner_text()
    default = page.locator('li.warning[data-code="default_system_prompt"]')
    assert DEFAULT_SYSTEM_PROMPT in default.inner_text() and "data.system_prompt" in default.inner_text()
    screenshot(page, "doctor-first-hour-warnings")
