"""The dataset doctor end to end: requested over HTTP, computed once by the real worker, stored, shown."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import CHAT_ROWS, LiveStudio
from tests.support.default_system_model import DEFAULT_SYSTEM_PROMPT, with_default_system_prompt

# LLaMA-Factory's identity.json in miniature: alpaca rows whose {{name}} and {{author}} were never filled in.
IDENTITY = [
    {"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, an AI assistant."},
    {"instruction": "What is two plus two?", "input": "", "output": "Four."},
    {"instruction": "Who made you?", "input": "", "output": "{{author}} made me."},
]


def _wait(studio: LiveStudio, path: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        analysis = studio.http.get(path).json()
        if analysis["status"] in ("succeeded", "failed"):
            return analysis
        time.sleep(0.3)
    raise AssertionError(f"{path} still {analysis['status']} after {timeout}s; worker log:\n"
                         + studio.worker_log.read_text()[-4000:])


def test_analysis_is_computed_once_by_the_worker(live_studio: LiveStudio, studio_objects: dict) -> None:
    base = f"/api/datasets/{studio_objects['dataset_id']}/analyses"
    posted = live_studio.http.post(base, json={"base_model": studio_objects["model"], "max_seq_length": 24})
    assert posted.status_code == 202, posted.text
    analysis = _wait(live_studio, f"{base}/{posted.json()['id']}")
    assert analysis["status"] == "succeeded", analysis["error"]
    result = analysis["result"]
    assert result["row_count"] == len(CHAT_ROWS) and result["format"] == "messages"
    assert sum(result["lengths"]["counts"]) == len(CHAT_ROWS)
    assert result["max_seq_length"] == 24 and 0 < result["truncated_count"] <= len(CHAT_ROWS)
    assert result["truncated_share"] == result["truncated_count"] / len(CHAT_ROWS)
    assert len(result["examples"]) == 20
    first = result["examples"][0]["segments"]
    assert "".join(s["text"] for s in first if s["trained"]) == "0 plus 0 is 0.<|im_end|>\n"
    assert {w["code"] for w in result["warnings"]} >= {"no_eos"}

    again = live_studio.http.post(base, json={"base_model": studio_objects["model"], "max_seq_length": 24})
    assert again.status_code == 202 and again.json()["id"] == analysis["id"]
    assert again.json()["status"] == "succeeded" and again.json()["finished_at"] == analysis["finished_at"]


@pytest.fixture(scope="module")
def identity_on_smol(live_studio: LiveStudio, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The identity rows uploaded, and a tiny model whose chat template inserts SmolLM2's default system prompt."""
    folder = with_default_system_prompt(tiny_model_dir, tmp_path_factory.mktemp("smol") / "model")
    model = live_studio.http.post("/api/models", json={"name": f"smol-{time.time_ns()}", "ref": str(folder)})
    assert model.status_code == 201, model.text
    body = json.dumps(IDENTITY).encode()
    dataset = live_studio.http.post("/api/datasets", files={"file": ("identity.json", body)}, data={"name": "identity"})
    assert dataset.status_code == 201 and dataset.json()["format"] == "alpaca", dataset.text
    return {"model": model.json()["name"], "dataset_id": dataset.json()["id"]}


def _analyse_on_the_page(studio: LiveStudio, dataset_id: int, form: dict) -> str:
    """Post the doctor's form, wait for the worker, and return the dataset page showing the analysis."""
    response = studio.http.post(f"/datasets/{dataset_id}/analyze", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    analysis_id = re.search(r"\?analysis=(\d+)", response.headers["location"]).group(1)
    analysis = _wait(studio, f"/api/datasets/{dataset_id}/analyses/{analysis_id}")
    assert analysis["status"] == "succeeded", analysis["error"]
    return studio.http.get(response.headers["location"]).text


def _warning(page: str, code: str) -> str | None:
    found = re.search(rf'<li class="warning" data-code="{code}">.*?</li>', page, re.S)
    return found.group(0) if found else None


def test_the_page_warns_of_placeholders_and_the_default_system_prompt(live_studio: LiveStudio,
                                                                       identity_on_smol: dict) -> None:
    dataset_id = identity_on_smol["dataset_id"]
    form = {"base_model": identity_on_smol["model"], "max_seq_length": "128"}
    page = _analyse_on_the_page(live_studio, dataset_id, form)
    placeholders = _warning(page, "unfilled_placeholders")
    assert placeholders and "3 rows contain template placeholders" in placeholders
    assert "{{name}} in 2 rows (e.g. rows 1, 2); {{author}} in 2 rows (e.g. rows 1, 4)" in placeholders
    assert "Replace {{name}} and {{author}} before uploading, e.g. sed" in placeholders
    default = _warning(page, "default_system_prompt")
    assert default and f"&#34;{DEFAULT_SYSTEM_PROMPT}&#34;" in default and "set data.system_prompt" in default

    # The system prompt a run would set: the worker renders the rows with it, and the default is gone.
    page = _analyse_on_the_page(live_studio, dataset_id, {**form, "system_prompt": "-You are Ada, made by Lab."})
    assert _warning(page, "default_system_prompt") is None and _warning(page, "unfilled_placeholders")
    examples = page[page.index('id="doctor-examples"'):]
    assert "system\n-You are Ada, made by Lab.&lt;|im_end|&gt;" in examples and DEFAULT_SYSTEM_PROMPT not in examples
