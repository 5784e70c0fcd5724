"""The HTML pages: each renders, forms show their errors by the field, and every control has a label."""

from __future__ import annotations

import json
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.core import blobs
from app.core.db import session_scope
from app.core.models import Dataset

ALPACA = [
    {"instruction": "Say hi", "input": "", "output": "Hi!"},
    {"instruction": "Add 2 and 3", "input": "", "output": "5"},
    {"instruction": "Name a colour", "input": "", "output": "Blue"},
]


class Controls(HTMLParser):
    """Collects form controls, label targets, and controls wrapped in a label."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "label":
            self.in_label += 1
            if attr.get("for"):
                self.label_for.add(attr["for"] or "")
        elif tag in ("input", "select", "textarea") and attr.get("type") not in ("hidden", "submit"):
            self.controls.append({**attr, "_wrapped": "1" if self.in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1

    def unlabelled(self) -> list[dict[str, str | None]]:
        """Controls with neither a label[for] nor a wrapping label."""
        return [c for c in self.controls if not c["_wrapped"] and c.get("id") not in self.label_for]


def parse_controls(html: str) -> Controls:
    parser = Controls()
    parser.feed(html)
    return parser


def field_block(html: str, name: str) -> str:
    """The markup from a control named `name` to the start of the next field."""
    start = html.index(f'name="{name}"')
    following = re.compile(r'<(div|fieldset) class="field[ "]').search(html, start)
    return html[start: following.start() if following else None]


@pytest.fixture
def model_name(client, tmp_path: Path) -> str:
    """A model registered from a local folder holding only a config.json (the web never opens weights)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")  # registration wants safetensors; the web never opens it
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    response = client.post("/models", data={"name": name, "ref": str(folder)}, follow_redirects=False)
    assert response.status_code == 303
    return name


@pytest.fixture
def dataset_id(resources, tmp_path: Path) -> int:
    """A dataset stored directly (the upload path is tested on its own below)."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ALPACA))
    with session_scope(resources.session_factory) as session:
        blob = blobs.put_file(session, path, "application/x-ndjson")
        dataset = Dataset(name=f"alpaca-{uuid.uuid4().hex[:6]}", filename="train.jsonl", file_type="jsonl",
                          format="alpaca", row_count=3, size_bytes=blob.size, sha256=blob.sha256,
                          columns=["instruction", "input", "output"], preview=ALPACA, blob_id=blob.id)
        session.add(dataset)
        session.flush()
        return dataset.id


def designer_form(model_name: str, dataset_id: int, **overrides: str) -> dict[str, str]:
    form = {"name": "page-test", "method": "lora", "model.base_model": model_name,
            "data.dataset_id": str(dataset_id), "lora.r": "8", "lora.target_modules": "attention",
            "training.max_steps": "3", "quantization.double_quant": "on"}  # checked by default, as a browser sends
    return {**form, **overrides}


def create_run(client, model_name: str, dataset_id: int, **overrides: str) -> int:
    form = designer_form(model_name, dataset_id, **overrides)
    response = client.post("/runs", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(re.fullmatch(r"/runs/(\d+)", response.headers["location"]).group(1))


@pytest.mark.parametrize("path, text", [("/", "Runs"), ("/datasets", "Upload a dataset"),
                                        ("/models", "lorastudio demo-model"), ("/runs/new", "Design a run")])
def test_each_page_renders(client, path: str, text: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert text in response.text
    assert "cdn" not in response.text.lower()


def test_runs_list_shows_a_run_and_filters_by_status(client, model_name: str, dataset_id: int) -> None:
    run_id = create_run(client, model_name, dataset_id, name="listed-run")
    page = client.get("/").text
    assert "listed-run" in page and model_name in page and 'hx-get="/runs/table"' in page
    assert f'data-run-id="{run_id}"' in client.get("/runs/table?status=queued").text
    assert f'data-run-id="{run_id}"' not in client.get("/runs/table?status=succeeded").text


def test_upload_dataset_happy_path(client, tmp_path: Path) -> None:
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ALPACA))
    with path.open("rb") as fh:
        response = client.post("/datasets", files={"file": ("alpaca.jsonl", fh)}, data={"name": "my alpaca"},
                               follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "my alpaca" in page.text and "Add 2 and 3" in page.text and 'id="dataset-preview"' in page.text


def test_upload_dataset_error_names_the_line(client, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n{not json\n")
    with path.open("rb") as fh:
        response = client.post("/datasets", files={"file": ("broken.jsonl", fh)}, data={"name": "broken"})
    assert response.status_code == 422
    assert "line 2" in response.text and 'id="problem"' in response.text


def test_dataset_page_shows_facts_and_preview(client, dataset_id: int) -> None:
    page = client.get(f"/datasets/{dataset_id}").text
    assert "alpaca" in page and "Name a colour" in page and "instruction" in page


def test_model_register_errors_are_inline(client, tmp_path: Path) -> None:
    response = client.post("/models", data={"name": "nowhere", "ref": str(tmp_path / "missing")})
    assert response.status_code == 422
    assert "No folder at" in field_block(response.text, "ref")
    response = client.post("/models", data={"name": "bad", "ref": "not a hub id!"})
    assert response.status_code == 422 and "Hugging Face id" in field_block(response.text, "ref")


def test_designer_shows_every_spec_field_with_help(client) -> None:
    page = client.get("/runs/new").text
    names = ("lora.r", "lora.alpha", "training.learning_rate", "quantization.quant_type", "data.train_on")
    for name in names:
        assert f'name="{name}"' in page
    assert "Rank of the update matrices" in page
    assert 'name="data.path"' not in page
    assert '<details class="section" id="section-training"' in page


def test_designer_invalid_field_shows_message_by_it(client, model_name: str, dataset_id: int) -> None:
    response = client.post("/runs", data=designer_form(model_name, dataset_id, **{"lora.r": "0"}))
    assert response.status_code == 422
    assert "greater than or equal to 1" in field_block(response.text, "lora.r")
    assert 'value="0"' in field_block(response.text, "lora.r")


def test_designer_valid_spec_creates_run(client, model_name: str, dataset_id: int) -> None:
    run_id = create_run(client, model_name, dataset_id, **{"lora.target_modules": "custom",
                                                           "lora.target_modules_custom": "q_proj, k_proj"})
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "queued"
    assert run["spec"]["lora"]["target_modules"] == ["q_proj", "k_proj"]
    assert run["spec"]["training"]["max_steps"] == 3


def test_designer_accepts_yaml(client, model_name: str, dataset_id: int) -> None:
    text = (f"method: lora\nmodel:\n  base_model: {model_name}\n"
            f"data:\n  dataset_id: {dataset_id}\nlora:\n  r: 4\n")
    response = client.post("/runs/yaml", data={"spec_yaml": text}, follow_redirects=False)
    assert response.status_code == 303
    bad = client.post("/runs/yaml", data={"spec_yaml": text.replace("r: 4", "r: 0")})
    assert bad.status_code == 422 and "greater than or equal to 1" in field_block(bad.text, "lora.r")


def test_clone_prefills_the_designer(client, model_name: str, dataset_id: int) -> None:
    run_id = create_run(client, model_name, dataset_id, **{"lora.r": "24", "name": "to-clone"})
    page = client.get(f"/runs/new?clone={run_id}").text
    assert 'value="24"' in field_block(page, "lora.r")
    assert 'value="to-clone (2)"' in field_block(page, "name")  # a copy is never named like its source
    assert f'value="{dataset_id}" selected' in page
    copy_id = create_run(client, model_name, dataset_id, name="to-clone (2)")
    assert 'value="to-clone (3)"' in field_block(client.get(f"/runs/new?clone={copy_id}").text, "name")


def test_run_page_has_live_chart_and_actions(client, model_name: str, dataset_id: int) -> None:
    run_id = create_run(client, model_name, dataset_id)
    page = client.get(f"/runs/{run_id}").text
    assert 'id="loss-chart"' in page and 'data-points="0"' in page
    assert f'data-events-url="/api/runs/{run_id}/events"' in page
    assert 'id="cancel-run"' in page and f'href="/runs/new?clone={run_id}"' in page
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page


def test_cancel_from_the_page(client, model_name: str, dataset_id: int) -> None:
    run_id = create_run(client, model_name, dataset_id)
    response = client.post(f"/runs/{run_id}/cancel", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/runs/{run_id}"
    page = client.get(f"/runs/{run_id}").text
    assert 'data-status="cancelled"' in page and 'id="cancel-run"' not in page
    assert client.post(f"/runs/{run_id}/cancel", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", ["/runs/999999", "/datasets/999999", "/runs/new?clone=999999", "/no/such"])
def test_missing_things_get_a_friendly_404_page(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'href="/"' in response.text and "Traceback" not in response.text


def test_api_errors_stay_json(client) -> None:
    response = client.get("/api/runs/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"


@pytest.mark.parametrize("path", ["/runs/new", "/datasets", "/models"])
def test_every_control_has_a_label(client, path: str) -> None:
    parser = parse_controls(client.get(path).text)
    assert parser.controls
    assert parser.unlabelled() == []


def test_sample_prompts_come_from_a_prompt_file_and_a_bad_line_is_named(client, model_name: str,  # noqa: ANN001
                                                                        dataset_id: int) -> None:
    lines = ('{"prompt": "Who are you?", "expected": "I am Quokka.", "scorer": "contains"}\n\n'
             '{"prompt": "Who made you?"}\n')
    run_id = create_run(client, model_name, dataset_id, **{"samples.prompts": lines})
    spec = client.get(f"/api/runs/{run_id}").json()["spec"]
    assert spec["samples"]["prompts"] == [{"prompt": "Who are you?", "expected": "I am Quokka.", "scorer": "contains"},
                                          {"prompt": "Who made you?", "expected": None, "scorer": None}]
    # The clone's form shows them as the file's lines again.
    clone = client.get(f"/runs/new?clone={run_id}").text
    assert "Who made you?" in field_block(clone, "samples.prompts")

    bad = lines + '{"prompt": "Where?", "expected": 3}\n{"prompt": "x"'
    refused = client.post("/runs", data=designer_form(model_name, dataset_id, **{"samples.prompts": bad}))
    assert refused.status_code == 422
    block = field_block(refused.text, "samples.prompts")
    assert "line 4, expected: Input should be a valid string" in block and "Where?" in block  # echoed to fix
    page = client.get("/runs/new").text
    assert 'id="f-samples-prompts-file"' in page and 'data-fills="f-samples-prompts"' in page
