"""Resource bombs in run specs (issue 16): YAML that would expand, recurse or fill memory is refused with a 4xx by a
real server whose memory does not grow, and numbers no spec may hold (NaN, inf, huge integers) in a JSON body are
a 422 naming the field, on SQLite and PostgreSQL, with nothing stored and nothing long sent back."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import func, select

from app import cli_specs
from app.core.config import Settings
from app.core.models import Run
from app.local_train import _read_spec
from app.stack import free_port, wait_for_http, web_argv
from tests.support.accounts import Account
from tests.support.spec_bombs import ALIAS_BOMB, MERGE_BOMB

MAX_GROWTH = 50 << 20
MAX_PAGE = 512 << 10  # the designer page with its error; the bombs would have made hundreds of MB of it
# name, pasted YAML, status, error code shown
BOMBS = [
    ("billion-laughs", ALIAS_BOMB, 422, "anchors (&amp;a) are not allowed"),
    ("aliases-in-targets", ALIAS_BOMB.replace("name: *i", "lora:\n  target_modules: *i"), 422, "line 1, column 4"),
    ("merge-keys", MERGE_BOMB, 422, "anchors (&amp;a)"),
    ("alias-only", "model: {base_model: m}\nlora: {target_modules: *t}\n", 422, "aliases (*t) are not allowed"),
    ("deep-nesting", "- " * 30_000 + "x", 422, "nested more than 16 levels"),
    ("deep-flow-nesting", "name: " + "[" * 30_000 + "]" * 30_000, 422, "line 1, column"),
    ("half-a-megabyte", "name: " + "lol " * (1 << 17), 413, "the YAML is 512 KiB; the limit is 64 KiB"),
    # Starlette refuses a form field over 1 MiB itself, before the route is called.
    ("ten-megabytes", "name: " + "lol " * (10 << 18), 400, "exceeded maximum size"),
]


def _rss_peak(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def server(settings: Settings, admin: Account, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The studio under uvicorn in a child process, warmed up on the designer's YAML import."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.resolved_database_url, "REDIS_URL": settings.redis_url,
           "LORASTUDIO_DATA_DIR": str(settings.data_dir), "LORASTUDIO_QUEUE": settings.queue}
    log = tmp_path_factory.mktemp("web") / "web.log"
    proc = subprocess.Popen(web_argv("127.0.0.1", port), env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, proc)
        for text in ("lora: {r: 0}\n", "a: &a 1\n", "name: " + "x" * (1 << 20)):  # the paths the bombs take
            httpx.post(f"{url}/runs/yaml", data={"spec_yaml": text}, headers=admin.headers, timeout=60)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize(("text", "status", "shown"), [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_a_yaml_bomb_is_refused_without_growing_the_server(server, admin: Account, text: str, status: int,
                                                           shown: str) -> None:
    url, pid = server
    before = _rss_peak(pid)
    response = httpx.post(f"{url}/runs/yaml", data={"spec_yaml": text}, headers=admin.headers, timeout=60)
    growth = _rss_peak(pid) - before
    print(f"{len(text.encode())} bytes pasted: {response.status_code}, page {len(response.content)} bytes, "
          f"server peak RSS grew {growth / 2**20:.1f} MiB")
    assert response.status_code == status, response.text[:2000]
    assert shown in response.text
    assert status == 400 or 'id="spec-yaml-error"' in response.text  # the error is shown beside the YAML box
    assert len(response.content) < MAX_PAGE and response.text.count("lol") < 50
    assert growth < MAX_GROWTH


def test_cli_spec_files_are_read_within_the_same_bounds(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    with pytest.raises(typer.Exit):
        cli_specs.from_file(None, bomb, None, None)  # type: ignore[arg-type] # refused before the client is used
    with pytest.raises(SystemExit, match=r"bomb.yaml: yaml_anchor: line 1, column 4: anchors"):
        _read_spec(bomb)
    bomb.write_bytes(b"name: " + b"x" * (20 << 20))
    with pytest.raises(SystemExit, match=r"yaml_too_large: the YAML is 20.0 MiB; the limit is 64 KiB"):
        _read_spec(bomb)
    bomb.write_text("model: {base_model: m}\ndata: {path: d.jsonl}\ntraining: {max_steps: 1000000000000000000}\n")
    with pytest.raises(SystemExit, match=r"invalid spec: training.max_steps: Input should be less than or equal"):
        _read_spec(bomb)


# --- JSON bodies: numbers no spec may hold -----------------------------------------------------------------------

def _body(ids: dict, section: str, field: str, literal: str) -> str:
    """A spec as raw JSON text with `literal` (NaN, a 400-digit integer…) as the value of section.field."""
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}}
    spec.setdefault(section, {})[field] = "@@"
    return json.dumps(spec).replace('"@@"', literal)


NUMBERS = [
    ("lr-nan", "training", "learning_rate", "NaN", "training.learning_rate"),
    ("decay-inf", "training", "weight_decay", "Infinity", "training.weight_decay"),
    ("alpha-minus-inf", "lora", "alpha", "-Infinity", "lora.alpha"),
    ("epochs-1e400", "training", "num_epochs", "1e400", "training.num_epochs"),
    ("divergence-nan", "training", "divergence_factor", "NaN", "training.divergence_factor"),
    ("seed-10^30", "training", "seed", str(10**30), "training.seed"),
    ("max-steps-10^18", "training", "max_steps", str(10**18), "training.max_steps"),
    ("save-steps-400-digits", "training", "save_steps", "9" * 400, "training.save_steps"),
    ("rank-2^63", "lora", "r", str(2**63), "lora.r"),
    ("dataset-2^64", "data", "dataset_id", str(2**64), "data.dataset_id"),
    ("seq-length-5000-digits", "data", "max_seq_length", "9" * 5000, "body"),
]


@pytest.mark.parametrize("path", ["/api/runs", "/api/estimate"])
@pytest.mark.parametrize(("section", "field", "literal", "named"), [n[1:] for n in NUMBERS],
                         ids=[n[0] for n in NUMBERS])
def test_non_finite_and_huge_numbers_are_a_422(client, session, ids: dict, path: str, section: str, field: str,
                                                literal: str, named: str) -> None:
    runs = session.scalar(select(func.count()).select_from(Run))
    response = client.post(path, content=_body(ids, section, field, literal),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == named and error["code"] in ("invalid_request", "invalid_json"), error
    assert len(response.content) < 2000 and literal not in response.text
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Run)) == runs


def test_an_error_body_never_repeats_long_input(client, ids: dict) -> None:
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}}
    many = {**spec, "training": {f"unknown_{i}": 1 for i in range(5000)}}
    response = client.post("/api/runs", json=many)
    assert response.status_code == 422 and len(response.content) < 8000, len(response.content)
    assert len(response.json()["error"]["errors"]) == 20 and "more problems" in response.json()["error"]["message"]
    long_key = {**spec, "x" * 100_000: 1}
    response = client.post("/api/runs", json=long_key)
    assert response.status_code == 422 and len(response.content) < 2000
    unknown_model = {**spec, "model": {"base_model": "m" * 1000}}
    response = client.post("/api/runs", json=unknown_model)
    assert 400 <= response.status_code < 500 and len(response.json()["error"]["message"]) <= 500


def test_a_refused_designer_form_is_not_echoed_back_whole(client, ids: dict) -> None:
    form = {"model.base_model": ids["model"], "data.dataset_id": str(ids["dataset_id"]), "name": "n" * 100_000,
            "lora.target_modules": "custom", "lora.target_modules_custom": "q_proj, " * 60_000}
    response = client.post("/runs", data=form)
    assert response.status_code == 422
    assert "at most 64 module names" in response.text and "at most 200 characters" in response.text
    assert len(response.content) < MAX_PAGE
