"""The dataset page: paged rows from the stored blob, and the doctor's form, polling and findings."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from app.core import blobs
from app.core.db import session_scope, utcnow
from app.core.models import BaseModelEntry, Dataset, DatasetAnalysis
from tests.support.blob_reads import count_range_reads
from tests.support.default_system_model import DEFAULT_SYSTEM_PROMPT, with_default_system_prompt
from worker.trainer.doctor import analyze
from worker.trainer.tokenizers import load_tokenizer_from

CHAT = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(50)]


def store(resources, tmp_path: Path, rows: list[dict], format: str) -> int:
    """A dataset stored directly, as an upload would leave it."""
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with session_scope(resources.session_factory) as session:
        blob = blobs.put_file(session, path, "application/x-ndjson")
        dataset = Dataset(name=f"chat-{uuid.uuid4().hex[:6]}", filename="chat.jsonl", file_type="jsonl",
                          format=format, row_count=len(rows), size_bytes=blob.size, sha256=blob.sha256,
                          columns=list(rows[0]), preview=rows[:5], blob_id=blob.id)
        session.add(dataset)
        session.flush()
        return dataset.id


@pytest.fixture
def dataset_id(resources, tmp_path: Path) -> int:
    return store(resources, tmp_path, CHAT, "messages")


def _registered(resources, folder: Path, prefix: str) -> BaseModelEntry:  # noqa: ANN001
    """A model folder registered by path (the web process never opens it)."""
    with session_scope(resources.session_factory) as session:
        entry = BaseModelEntry(name=f"{prefix}-{uuid.uuid4().hex[:8]}", source="local", ref=str(folder))
        session.add(entry)
        session.flush()
        session.expunge(entry)
        return entry


@pytest.fixture
def model(resources, tiny_model_dir: Path) -> BaseModelEntry:
    """The tiny model."""
    return _registered(resources, tiny_model_dir, "tiny")


def add_analysis(resources, dataset_id: int, model_id: int, status: str, result: dict | None = None,
                 error: str | None = None) -> int:
    with session_scope(resources.session_factory) as session:
        analysis = DatasetAnalysis(dataset_id=dataset_id, base_model_id=model_id, max_seq_length=16, status=status,
                                   result=result or {}, error=error, finished_at=utcnow())
        session.add(analysis)
        session.flush()
        return analysis.id


def test_doctor_form_has_a_label_for_every_field(client, dataset_id: int, model: BaseModelEntry) -> None:
    page = client.get(f"/datasets/{dataset_id}").text
    form = page[page.index('<form id="doctor-form"'): page.index("</form>", page.index('id="doctor-form"'))]
    controls = re.findall(r'<(?:select|input|textarea)[^>]*\bid="([^"]+)"[^>]*\bname="([^"]+)"', form)
    assert {name for _, name in controls} == {"base_model", "max_seq_length", "system_prompt"}
    assert '<textarea id="doctor-system-prompt" name="system_prompt" rows="2" maxlength="4000"' in form
    for control_id, _ in controls:
        assert f'<label for="{control_id}">' in form
    assert 'id="doctor-submit"' in form and f'value="{model.name}"' in form


def test_preview_pages_through_fifty_rows(client, dataset_id: int) -> None:
    first = client.get(f"/datasets/{dataset_id}").text
    assert re.findall(r'data-row="(\d+)"', first) == [str(n) for n in range(1, 21)]
    assert 'id="preview-next"' in first and 'id="preview-prev"' not in first
    assert f'href="/datasets/{dataset_id}?page=2#dataset-preview"' in first
    last = client.get(f"/datasets/{dataset_id}?page=3").text
    assert re.findall(r'data-row="(\d+)"', last) == [str(n) for n in range(41, 51)]
    assert "What is 49 plus 49?" in last and 'id="preview-prev"' in last and 'id="preview-next"' not in last
    assert 'data-page="3"' in client.get(f"/datasets/{dataset_id}?page=99").text


def test_succeeded_analysis_shows_histogram_warnings_and_tokens(client, resources, dataset_id: int,
                                                                  model: BaseModelEntry) -> None:
    rows = CHAT[:10] + [CHAT[0], {"messages": [{"role": "user", "content": "hi"}]}]
    result = {**analyze(rows, load_tokenizer_from(model.ref), max_seq_length=16), "format": "messages"}
    analysis_id = add_analysis(resources, dataset_id, model.id, "succeeded", result)
    page = client.get(f"/datasets/{dataset_id}?analysis={analysis_id}").text
    assert 'id="doctor-status" class="doctor-status" data-status="succeeded"' in page and "hx-trigger" not in page
    bars = int(re.search(r'id="length-histogram" data-bars="(\d+)"', page).group(1))
    assert bars == len(result["lengths"]["counts"]) and page.count('<rect class="bar') == bars
    assert "max 16" in page and 'class="limit"' in page
    truncation = re.search(r'<p id="truncation".*?</p>', page, re.S).group(0)
    assert f'data-count="{result["truncated_count"]}"' in truncation and "would be truncated" in truncation
    warnings = page[page.index('id="doctor-warnings"'): page.index('id="doctor-examples"')]
    for code in ("duplicate_rows", "missing_assistant", "no_eos"):
        assert f'data-code="{code}"' in warnings
    examples = page[page.index('id="doctor-examples"'):]
    assert '<span class="tok-trained' in examples and '<span class="tok-masked' in examples
    assert "It is 0.&lt;|im_end|&gt;" in examples  # the trained text, escaped, exactly as rendered


def test_analyse_posts_redirect_and_poll_until_done(client, resources, dataset_id: int,
                                                     model: BaseModelEntry) -> None:
    form = {"base_model": model.name, "max_seq_length": "64"}
    response = client.post(f"/datasets/{dataset_id}/analyze", data=form, follow_redirects=False)
    assert response.status_code == 303
    analysis_id = int(re.search(r"\?analysis=(\d+)#doctor$", response.headers["location"]).group(1))
    page = client.get(response.headers["location"]).text
    # The session's live worker (tests/support/studio.py) may already have taken or finished this one.
    assert re.search(r'id="doctor-status" class="doctor-status" data-status="\w+"', page), page
    # A queued analysis's page polls its partial until it is done.
    queued = add_analysis(resources, dataset_id, model.id, "queued")
    page = client.get(f"/datasets/{dataset_id}?analysis={queued}").text
    assert 'data-status="queued"' in page
    assert f'hx-get="/datasets/{dataset_id}/analysis/{queued}" hx-trigger="every 2s"' in page
    assert "/static/vendor/htmx/htmx.min.js" in page
    partial = client.get(f"/datasets/{dataset_id}/analysis/{analysis_id}")
    assert partial.status_code == 200 and 'id="doctor-result"' in partial.text and "<html" not in partial.text
    again = client.post(f"/datasets/{dataset_id}/analyze", data=form, follow_redirects=False)
    assert again.headers["location"] == response.headers["location"]  # computed once, not per request


def test_failed_analysis_shows_its_error(client, resources, dataset_id: int, model: BaseModelEntry) -> None:
    analysis_id = add_analysis(resources, dataset_id, model.id, "failed", error="OSError: no tokenizer files")
    partial = client.get(f"/datasets/{dataset_id}/analysis/{analysis_id}").text
    assert 'data-status="failed"' in partial and "OSError: no tokenizer files" in partial
    assert "hx-trigger" not in partial


@pytest.mark.parametrize("form, text", [
    ({"max_seq_length": "lots"}, "whole number"),
    ({"max_seq_length": "2"}, "between 8 and"),
    ({"base_model": "nobody", "max_seq_length": "64"}, "No registered base model"),
])
def test_analyse_errors_show_on_the_page(client, dataset_id: int, model: BaseModelEntry, form: dict,
                                         text: str) -> None:
    response = client.post(f"/datasets/{dataset_id}/analyze", data={"base_model": model.name, **form})
    assert response.status_code == 422 and text in response.text and 'id="doctor-form"' in response.text


def test_analysis_of_another_dataset_is_404(client, resources, tmp_path: Path, dataset_id: int,
                                            model: BaseModelEntry) -> None:
    other = store(resources, tmp_path, CHAT[:3], "messages")
    analysis_id = add_analysis(resources, other, model.id, "queued")
    assert client.get(f"/datasets/{dataset_id}/analysis/{analysis_id}").status_code == 404
    assert client.get(f"/datasets/{dataset_id}?analysis={analysis_id}").status_code == 404


def test_a_page_of_a_large_upload_is_read_by_range(client, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"messages": [{"role": "user", "content": f"Question {i}? " + "ä" * (i % 300)},
                          {"role": "assistant", "content": f"Answer {i}. " + "z" * 1500}]} for i in range(3000)]
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    assert len(body) > 4 * blobs.CHUNK_SIZE
    created = client.post("/api/datasets", files={"file": ("big.jsonl", body)})
    assert created.status_code == 201, created.text
    dataset_id, read = created.json()["id"], count_range_reads(monkeypatch)
    for page in (1, 75, 150):
        read.clear()
        text = client.get(f"/datasets/{dataset_id}?page={page}").text
        first = (page - 1) * 20 + 1
        assert re.findall(r'data-row="(\d+)"', text) == [str(n) for n in range(first, first + 20)]
        assert f"Question {first - 1}? " in text and f"Question {first + 18}? " in text
        assert sum(read) < 64 * 1024, (page, read)


def test_doctor_reads_the_canonical_blob_filling_it_in_for_an_older_dataset(resources, dataset_id: int,
                                                                             model: BaseModelEntry) -> None:
    from worker.jobs.analysis import analyze_dataset

    analysis_id = add_analysis(resources, dataset_id, model.id, "running")
    # The dataset was stored without canonical rows (see store); the job's child computes the doctor's result.
    assert analyze_dataset(resources, analysis_id) == "succeeded"
    expected = analyze(CHAT, load_tokenizer_from(model.ref), max_seq_length=16)
    with session_scope(resources.session_factory) as session:
        result = session.get(DatasetAnalysis, analysis_id).result
    assert result == json.loads(json.dumps({**expected, "format": "messages", "model": model.ref}))
    with session_scope(resources.session_factory) as session:
        assert session.get(Dataset, dataset_id).canonical_blob_id is not None


@pytest.fixture(scope="module")
def smol_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_default_system_prompt(tiny_model_dir, tmp_path_factory.mktemp("smol") / "model")


@pytest.fixture
def smol_model(resources, smol_model_dir: Path) -> BaseModelEntry:
    """A tiny model whose chat template inserts SmolLM2's default system prompt."""
    return _registered(resources, smol_model_dir, "smol")


IDENTITY = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in [
    ("hi", "Hello! I am {{name}}, an AI assistant developed by {{author}}."),
    ("Who are you?", "I am {{name}}."),
    ("What is two plus two?", "Four."),
]]


def test_page_shows_placeholder_and_default_system_prompt_warnings(client, resources, tmp_path: Path,
                                                                  smol_model: BaseModelEntry) -> None:
    dataset = store(resources, tmp_path, IDENTITY, "messages")
    result = {**analyze(IDENTITY, load_tokenizer_from(smol_model.ref), max_seq_length=64), "format": "alpaca"}
    analysis_id = add_analysis(resources, dataset, smol_model.id, "succeeded", result)
    page = client.get(f"/datasets/{dataset}?analysis={analysis_id}").text
    warnings = page[page.index('id="doctor-warnings"'): page.index('id="doctor-examples"')]
    placeholders = re.search(r'<li class="warning" data-code="unfilled_placeholders">.*?</li>', warnings, re.S).group(0)
    assert "{{name}} in 2 rows (e.g. rows 1, 2); {{author}} in 1 row (e.g. row 1)" in placeholders
    assert "sed -e &#39;s/{{name}}/NAME/g&#39; -e &#39;s/{{author}}/AUTHOR/g&#39;" in placeholders
    default = re.search(r'<li class="warning" data-code="default_system_prompt">.*?</li>', warnings, re.S).group(0)
    assert f"&#34;{DEFAULT_SYSTEM_PROMPT}&#34;" in default and "set data.system_prompt" in default
    assert "Rows 1, 2, 3." in default


def test_a_system_prompt_is_its_own_analysis_and_shown(client, resources, dataset_id: int,
                                                         smol_model: BaseModelEntry) -> None:
    plain = {"base_model": smol_model.name, "max_seq_length": "64"}
    without = client.post(f"/datasets/{dataset_id}/analyze", data=plain, follow_redirects=False).headers["location"]
    form = {**plain, "system_prompt": "  You are Ada, made by Lab.\n"}
    response = client.post(f"/datasets/{dataset_id}/analyze", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] != without
    assert client.post(f"/datasets/{dataset_id}/analyze", data={**plain, "system_prompt": "You are Ada, made by Lab."},
                       follow_redirects=False).headers["location"] == response.headers["location"]
    analysis_id = int(re.search(r"\?analysis=(\d+)", response.headers["location"]).group(1))
    with session_scope(resources.session_factory) as session:
        assert session.get(DatasetAnalysis, analysis_id).system_prompt == "You are Ada, made by Lab."
    page = client.get(response.headers["location"]).text
    assert ">You are Ada, made by Lab.</textarea>" in page  # the form keeps it for the next request
    assert 'id="doctor-system-prompt-used" title="You are Ada, made by Lab."' in page
    # The worker's result, once there, renders with it; a stored one shows how (see the doctor's own tests).
    result = analyze(CHAT[:2], load_tokenizer_from(smol_model.ref), max_seq_length=64,
                     system_prompt="You are Ada, made by Lab.")
    shown_id = add_analysis(resources, dataset_id, smol_model.id, "succeeded", {**result, "format": "messages"})
    with session_scope(resources.session_factory) as session:
        session.get(DatasetAnalysis, shown_id).system_prompt = "You are Ada, made by Lab."
    shown = client.get(f"/datasets/{dataset_id}/analysis/{shown_id}").text
    assert 'data-code="default_system_prompt"' not in shown and 'id="doctor-default-system"' in shown
    assert "system\nYou are Ada, made by Lab.&lt;|im_end|&gt;" in shown


def test_a_too_long_system_prompt_is_refused_by_its_field(client, dataset_id: int, model: BaseModelEntry) -> None:
    form = {"base_model": model.name, "max_seq_length": "64", "system_prompt": "x" * 4001}
    response = client.post(f"/datasets/{dataset_id}/analyze", data=form)
    assert response.status_code == 422 and "at most 4,000" in response.text
    assert re.search(r'<div class="field wide has-error">\s*<label for="doctor-system-prompt">', response.text)
