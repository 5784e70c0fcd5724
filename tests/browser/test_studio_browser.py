"""The studio in a real browser: upload → doctor → design a QLoRA run from a preset → live chart → download;
compare two runs; labels and keyboard reach on every form."""

from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.browser.conftest import screenshot
from tests.support.studio import CHAT_ROWS, run_spec

pytestmark = pytest.mark.e2e

UNLABELLED_FIELDS_JS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => !['hidden', 'submit', 'button'].includes(el.type))
  .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => el.name || el.id)"""


def _assert_labelled(page) -> None:  # noqa: ANN001
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], f"fields without a label on {page.url}"


def _tab_reaches(page, selector: str, presses: int = 80) -> bool:  # noqa: ANN001
    """Keyboard only: pressing Tab from the top of the page focuses the element."""
    page.locator("body").focus()
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(sel) => document.activeElement === document.querySelector(sel)", selector):
            return True
    return False


def _upload(page, tmp_path: Path) -> int:  # noqa: ANN001
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in CHAT_ROWS))
    page.goto("/datasets")
    _assert_labelled(page)
    assert _tab_reaches(page, "#upload-submit")
    page.set_input_files("#f-file", str(data))
    page.fill("#f-name", "browser chat")
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r"/datasets/\d+"))
    screenshot(page, "dataset")
    return int(page.url.rstrip("/").split("/")[-1].split("?")[0])


def _doctor(page, model_name: str) -> None:  # noqa: ANN001
    _assert_labelled(page)
    page.select_option("#doctor-form [name=base_model]", label=model_name)
    page.fill("#doctor-form [name=max_seq_length]", "48")
    page.click("#doctor-submit")
    page.wait_for_selector("#length-histogram", timeout=120_000)
    assert page.locator("#doctor-examples .tok-trained").count() > 0
    assert int(page.get_attribute("#length-histogram", "data-bars")) > 0
    screenshot(page, "dataset-doctor")


def _design_and_launch(page, dataset_id: int, model_name: str) -> int:  # noqa: ANN001
    page.goto("/runs/new?preset=quick-qlora")
    _assert_labelled(page)
    assert page.input_value("#f-method") == "qlora"
    page.select_option("#f-data-dataset-id", value=str(dataset_id))
    page.select_option("#f-model-base-model", label=model_name)
    page.fill("#f-data-max-seq-length", "64")
    page.click("#section-training > summary")  # advanced settings are folded, as a person finds them
    page.fill("#f-training-max-steps", "120")
    page.fill("#f-training-logging-steps", "1")
    page.fill("#f-training-per-device-batch-size", "4")
    page.keyboard.press("Tab")  # leave the field so its change event fires, as a person moving on would
    # The designer estimates memory and time for the chosen model on the worker's device before launch.
    page.wait_for_selector("#estimate-verdict[data-available=true]", timeout=30_000)
    assert page.get_attribute("#estimate-verdict", "data-fits") == "true"
    for figure in ("#estimate-memory", "#estimate-time", "#estimate-trainable"):
        assert re.search(r"\d", page.inner_text(figure)), figure
    screenshot(page, "designer")
    page.click("#submit-run")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(page.url.rstrip("/").split("/")[-1])


def _watch_chart_grow(page) -> None:  # noqa: ANN001
    chart = page.locator("#loss-chart")
    deadline = time.monotonic() + 180
    counts = []
    while time.monotonic() < deadline:
        status = page.get_attribute("#run-status", "data-status")
        points = int(chart.get_attribute("data-points") or 0)
        if status == "running" and points:
            counts.append(points)
        if len(set(counts)) >= 2 or status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    assert len(set(counts)) >= 2 and counts[-1] > counts[0], f"chart did not grow while running: {counts}"
    screenshot(page, "run-live")


def test_upload_doctor_design_train_download(page, live_studio, studio_objects, tiny_model_dir: Path,
                                             tmp_path: Path) -> None:
    model_name = studio_objects["model"]
    dataset_id = _upload(page, tmp_path)
    _doctor(page, model_name)
    run_id = _design_and_launch(page, dataset_id, model_name)
    _watch_chart_grow(page)
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=240_000)
    download_link = page.wait_for_selector("#download-adapter", timeout=30_000)
    with page.expect_download() as info:
        download_link.click()
    archive = tmp_path / "adapter.zip"
    info.value.save_as(archive)
    assert page.inner_text("#run-details").count("cpu") >= 1, "device not shown once the run trained"
    screenshot(page, "run-finished")
    folder = tmp_path / "adapter"
    zipfile.ZipFile(archive).extractall(folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder)
    assert any("lora_" in name for name, _ in model.named_parameters())
    weights = load_file(folder / "adapter_model.safetensors")
    assert all(torch.count_nonzero(t) > 0 for name, t in weights.items() if "lora_B" in name)
    assert live_studio.http.get(f"/api/runs/{run_id}").json()["method"] == "qlora"


def test_compare_two_runs(page, live_studio, studio_objects) -> None:
    ids = []
    for lr in (5e-3, 1e-3):
        spec = run_spec(studio_objects["dataset_id"], studio_objects["model"], "lora", 6)
        spec["training"]["learning_rate"] = lr
        ids.append(live_studio.http.post("/api/runs", json=spec).json()["id"])
    for run_id in ids:
        live_studio.wait_for(run_id, {"succeeded"})
    page.goto("/runs/compare?" + "&".join(f"ids={i}" for i in ids))
    page.wait_for_function("() => Number(document.querySelector('#compare-chart')?.dataset.series || 0) >= 2")
    diff = page.locator("#spec-diff").inner_text()
    assert "training.learning_rate" in diff
    _assert_labelled(page)
    screenshot(page, "compare")


def test_pages_have_labels_and_a_missing_run_page(page) -> None:
    for path in ("/", "/models", "/datasets", "/runs/new"):
        page.goto(path)
        _assert_labelled(page)
        screenshot(page, "page" + path.replace("/", "-").rstrip("-"))
    response = page.goto("/runs/999999")
    assert response.status == 404 and "999999" in page.inner_text("main")
