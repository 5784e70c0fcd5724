"""The run designer: presets fill the form, the estimate panel renders and updates, YAML export round-trips."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.pages.test_pages import dataset_id, designer_form, field_block, parse_controls  # noqa: F401
from worker.planning.spec import RunSpec


@pytest.fixture
def local_model(client, tiny_model_dir: Path) -> str:
    """The tiny model registered from its folder (config.json is there, so it can be sized)."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    response = client.post("/models", data={"name": name, "ref": str(tiny_model_dir)}, follow_redirects=False)
    assert response.status_code == 303
    return name


def selected(page: str, name: str) -> str:
    """The selected option's value of the select named `name`."""
    block = field_block(page, name)
    match = re.search(r'<option value="([^"]*)" selected', block)
    return match.group(1) if match else ""


def test_preset_by_query_fills_the_fields(client) -> None:
    page = client.get("/runs/new?preset=quick-qlora").text
    assert selected(page, "method") == "qlora"
    assert 'value="16"' in field_block(page, "lora.r") and 'value="512"' in field_block(page, "data.max_seq_length")
    assert 'id="f-lora-target-modules-all-linear" name="lora.target_modules" value="all-linear" checked' in page
    assert '<option value="quick-qlora" selected>' in page


def test_applying_a_preset_keeps_name_model_and_dataset(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    form = designer_form(local_model, dataset_id, name="mine", preset="high-quality", **{"lora.r": "3"})
    page = client.post("/runs/new/preset", data=form).text
    assert 'value="64"' in field_block(page, "lora.r") and 'value="2048"' in field_block(page, "data.max_seq_length")
    assert 'value="mine"' in field_block(page, "name")
    assert selected(page, "model.base_model") == local_model and selected(page, "data.dataset_id") == str(dataset_id)
    assert 'name="training.gradient_checkpointing" type="checkbox" checked' in page


def test_preset_picker_lists_every_recipe(client) -> None:
    page = client.get("/runs/new").text
    for key in ("quick-qlora", "balanced-lora", "high-quality"):
        assert f'data-preset="{key}"' in page and f'<option value="{key}"' in page
    assert 'id="export-yaml"' in page and 'id="preset-select"' in page


def test_estimate_panel_renders_with_numbers(client, local_model: str) -> None:
    page = client.get("/runs/new?preset=balanced-lora").text
    assert 'id="estimate-panel"' in page and 'id="estimate-device"' in page and '<label for="estimate-device">' in page
    form = designer_form(local_model, 1, estimate_device="gpu-24")
    form.pop("data.dataset_id")
    partial = client.post("/runs/new/estimate", data=form).text
    assert 'id="estimate-verdict" data-fits="true" data-available="true"' in partial
    assert re.search(r'id="estimate-memory">\d+\.\d\d GiB<', partial)
    assert "of" in re.search(r'id="estimate-trainable">([^<]*)<', partial).group(1)
    assert 'id="estimate-recommendations"' in partial and "method=qlora" in partial
    assert "estimate-time" in partial


def test_estimate_panel_explains_when_unavailable(client, dataset_id: int) -> None:  # noqa: F811
    form = designer_form("HuggingFaceTB/SmolLM2-135M-Instruct", dataset_id)
    partial = client.post("/runs/new/estimate", data=form).text
    assert 'data-available="false"' in partial and "Hugging Face id" in partial


def test_export_yaml_round_trips(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    form = designer_form(local_model, dataset_id, **{"lora.target_modules": "custom",
                                                     "lora.target_modules_custom": "q_proj, o_proj"})
    response = client.post("/runs/new/yaml", data=form)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/yaml")
    assert response.headers["content-disposition"] == 'attachment; filename="page-test.yaml"'
    spec = RunSpec.from_yaml(response.text)
    assert spec.lora.target_modules == ["q_proj", "o_proj"] and spec.data.dataset_id == dataset_id
    assert spec.model.base_model == local_model and spec.training.max_steps == 3


def test_export_yaml_shows_errors_by_the_field(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    response = client.post("/runs/new/yaml", data=designer_form(local_model, dataset_id, **{"lora.r": "0"}))
    assert response.status_code == 422 and "greater than or equal to 1" in field_block(response.text, "lora.r")


@pytest.mark.parametrize("path", ["/runs/new", "/runs/new?preset=high-quality"])
def test_every_designer_control_has_a_label(client, path: str) -> None:
    parser = parse_controls(client.get(path).text)
    assert parser.unlabelled() == []


def test_the_system_prompt_is_a_bounded_multiline_field(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    page = client.get("/runs/new").text
    assert re.search(r'<textarea id="f-data-system-prompt" name="data.system_prompt" rows="3" maxlength="4000"', page)
    assert '<label for="f-data-system-prompt">System prompt <span class="optional">optional</span>' in page
    prompt = "You are Ada, made by Lab.\nAnswer briefly."
    form = designer_form(local_model, dataset_id, **{"lora.r": "0", "data.system_prompt": prompt})
    response = client.post("/runs/new/yaml", data=form)  # refused for lora.r: the form comes back as posted
    assert response.status_code == 422 and f">{prompt}</textarea>" in field_block(response.text, "data.system_prompt")
    form.update({"lora.r": "8", "data.system_prompt": "x" * 4001})
    response = client.post("/runs/new/yaml", data=form)
    assert response.status_code == 422 and "at most 4000 characters" in field_block(response.text, "data.system_prompt")


def test_a_preset_applied_with_a_dataset_is_fitted_to_its_size(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    form = designer_form(local_model, dataset_id, preset="quick-qlora")
    page = client.post("/runs/new/preset", data=form).text
    note = re.search(r'id="fitted-note"[^>]*>([^<]*)<', page).group(1)
    assert "training.num_epochs 12" in note and "training.learning_rate 0.001" in note  # 3 rows: 12 epochs at most
    assert 'value="12.0"' in field_block(page, "training.num_epochs") or 'value="12"' in field_block(
        page, "training.num_epochs")


def test_the_estimate_panel_warns_of_a_plan_too_short_to_learn_and_fits_it(
        client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    form = designer_form(local_model, dataset_id, **{"training.max_steps": "-1", "training.num_epochs": "1",
                                                     "training.learning_rate": "0.0002"})
    partial = client.post("/runs/new/estimate", data=form).text
    warning = re.search(r'id="plan-warning">(.*?)</p>', partial, re.S).group(1)
    assert "1 optimizer step at lr 2e-4 on 3 rows: expect little change" in warning
    assert 'formaction="/runs/new/fit"' in partial
    page = client.post("/runs/new/fit", data=form).text
    assert "training.num_epochs 12" in re.search(r'id="fitted-note"[^>]*>([^<]*)<', page).group(1)
    assert 'id="fit-to-dataset"' not in page  # fitted: nothing more to offer


def test_a_long_enough_plan_shows_its_length_without_a_warning(client, local_model: str, dataset_id: int) -> None:  # noqa: F811
    form = designer_form(local_model, dataset_id, **{"training.max_steps": "200", "training.learning_rate": "0.001"})
    partial = client.post("/runs/new/estimate", data=form).text
    assert 'id="plan-warning"' not in partial and "200 optimizer steps at lr 1e-3 on 3 rows." in partial
