"""Paths named by users: a GGUF file never leaves its registered model's folder (at the studio's checks and again
in the worker), revisions and hub ids are bounded patterns, and only admins see where a local model lives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.models import HIDDEN_REF
from app.core.models import Run, RunStatus
from tests.support.accounts import Account
from worker.jobs.inputs import export_training_inputs
from worker.planning.inputs import TrainingInputs, gguf_path
from worker.planning.spec import ModelSpec, RunSpec

BAD_GGUF = ["../x.gguf", "/etc/passwd", "/etc/x.gguf", "a/b.gguf", "a\\b.gguf", "model.bin", "..", ".hidden.gguf",
            "x\x00.gguf", "c:x.gguf", "x" * 300 + ".gguf"]
BAD_REVISION = ["../main", "a/b", "-x", ".x", "a..b", "ma in", "ünïcode", "x" * 101]


@pytest.fixture
def gguf_folder(client: TestClient, tmp_path: Path) -> dict:
    """A registered local GGUF model whose folder also holds a symlink to a GGUF file outside it."""
    folder, outside = tmp_path / "gguf-model", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (folder / "model.Q4_K_M.gguf").write_bytes(b"GGUF")
    (outside / "secret.gguf").write_bytes(b"GGUF")
    (folder / "escape.gguf").symlink_to(outside / "secret.gguf")
    response = client.post("/api/models", json={"name": f"g-{tmp_path.name}", "ref": str(folder),
                                                "gguf_file": "model.Q4_K_M.gguf"})
    assert response.status_code == 201, response.text
    return {"folder": folder, "name": response.json()["name"], "id": response.json()["id"]}


def _spec(model: str, dataset_id: int, **model_fields: object) -> dict:
    return {"model": {"base_model": model, **model_fields}, "data": {"dataset_id": dataset_id}}


@pytest.mark.parametrize("name", BAD_GGUF)
def test_gguf_file_must_be_a_plain_gguf_file_name(name: str) -> None:
    with pytest.raises(ValidationError, match="gguf_file"):
        ModelSpec(gguf_file=name)


@pytest.mark.parametrize("revision", BAD_REVISION)
def test_revision_is_a_branch_tag_or_commit(revision: str) -> None:
    with pytest.raises(ValidationError, match="revision"):
        ModelSpec(revision=revision)


def test_good_names_pass_and_blanks_are_none() -> None:
    spec = ModelSpec(base_model=" org/name ", gguf_file="tinyllama-1.1b.Q4_K_M.gguf", revision="a" * 40)
    assert (spec.base_model, spec.gguf_file, spec.revision) == ("org/name", "tinyllama-1.1b.Q4_K_M.gguf", "a" * 40)
    assert ModelSpec(gguf_file=" ", revision="").gguf_file is None
    assert ModelSpec(revision="v1.0-rc_2").revision == "v1.0-rc_2"
    with pytest.raises(ValidationError, match="base_model"):
        ModelSpec(base_model="a\nb")
    with pytest.raises(ValidationError, match="base_model"):
        ModelSpec(base_model="x" * 1001)


def test_gguf_path_stays_inside_the_folder_after_symlinks(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "ok.gguf").write_bytes(b"GGUF")
    (tmp_path / "out.gguf").write_bytes(b"GGUF")
    (tmp_path / "m" / "link.gguf").symlink_to(tmp_path / "out.gguf")
    assert gguf_path(str(tmp_path / "m"), "ok.gguf") == (tmp_path / "m" / "ok.gguf").resolve()
    for name in ("link.gguf", "../out.gguf", "missing.gguf", str(tmp_path / "out.gguf")):
        assert gguf_path(str(tmp_path / "m"), name) is None, name


@pytest.mark.parametrize(("field", "value"), [("gguf_file", "../../../etc/passwd.gguf"), ("gguf_file", "/etc/passwd"),
                                              ("revision", "../../x"), ("revision", "refs/pr/1")])
def test_the_api_refuses_a_path_in_the_spec_naming_the_field(client: TestClient, ids: dict, field: str,
                                                             value: str) -> None:
    response = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"], **{field: value}))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == f"model.{field}"


@pytest.mark.parametrize("name", ["escape.gguf", "missing.gguf"])
def test_a_gguf_file_outside_or_absent_from_the_registered_folder_is_refused(client: TestClient, ids: dict,
                                                                             gguf_folder: dict, name: str) -> None:
    response = client.post("/api/runs", json=_spec(gguf_folder["name"], ids["dataset_id"], gguf_file=name))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("gguf_not_in_model", "model.gguf_file")
    assert str(gguf_folder["folder"]) not in error["message"]


def test_registration_refuses_a_gguf_name_that_leaves_the_folder(client: TestClient, gguf_folder: dict) -> None:
    for name in ("escape.gguf", "../elsewhere/secret.gguf"):
        response = client.post("/api/models", json={"name": f"other-{name}", "ref": str(gguf_folder["folder"]),
                                                    "gguf_file": name})
        assert response.status_code == 422 and response.json()["error"]["field"] == "gguf_file", response.text


def _stored_run(session, ids: dict, model_id: int, model_spec: dict) -> Run:  # noqa: ANN001
    """A run stored as the studio stores one, its spec as given (bypassing the web's checks: an old or forged row)."""
    spec = {**RunSpec.model_validate(_spec("x", ids["dataset_id"])).model_dump(mode="json"), "model": model_spec}
    run = Run(name="paths", status=RunStatus.running, method="lora", spec=spec, dataset_id=ids["dataset_id"],
              base_model_id=model_id)
    session.add(run)
    session.flush()
    return run


@pytest.mark.parametrize("name", ["escape.gguf", "../elsewhere/secret.gguf", "/etc/passwd"])
def test_the_worker_refuses_a_gguf_file_outside_the_folder(session, ids: dict, gguf_folder: dict, tmp_path: Path,
                                                           name: str) -> None:
    run = _stored_run(session, ids, gguf_folder["id"], {"base_model": gguf_folder["name"], "gguf_file": name})
    with pytest.raises(ValueError, match="gguf_file"):
        export_training_inputs(session, run.id, tmp_path / "work")
    assert not (tmp_path / "work" / "inputs.json").exists()


def test_the_worker_resolves_a_gguf_file_inside_the_folder(session, ids: dict, gguf_folder: dict,
                                                           tmp_path: Path) -> None:
    run = _stored_run(session, ids, gguf_folder["id"], {"base_model": gguf_folder["name"]})
    files = export_training_inputs(session, run.id, tmp_path / "work")
    inputs = TrainingInputs.model_validate_json(files.inputs.read_text())
    assert (inputs.model_ref, inputs.gguf_file) == (str(gguf_folder["folder"].resolve()), "model.Q4_K_M.gguf")
    with pytest.raises(ValidationError):
        TrainingInputs(model_ref=inputs.model_ref, gguf_file="../x.gguf", data_path="d.jsonl")


@pytest.mark.parametrize("ref", ["org/name/extra", "org/na me", "org--x/name", "org/name..x", "ωrg/name", "org/",
                                 "/org", "org/name.git", "a" * 97 + "/b"])
def test_hub_ids_are_owner_slash_name_in_the_hubs_characters(app, member: Account, ref: str) -> None:  # noqa: ANN001
    with TestClient(app, headers=member.headers) as as_member:
        response = as_member.post("/api/models", json={"name": f"hub-{len(ref)}-{ref[:3]}", "ref": ref})
    assert response.status_code in (403, 422), response.text
    assert response.json()["error"]["field"] == "ref"


def test_a_plain_hub_id_registers(app, member: Account) -> None:  # noqa: ANN001
    with TestClient(app, headers=member.headers) as as_member:
        response = as_member.post("/api/models", json={"ref": "HuggingFaceTB/SmolLM2-135M-Instruct.v2_x"})
    assert response.status_code == 201, response.text


def test_only_admins_see_where_a_local_model_lives(app, client: TestClient, ids: dict, member: Account) -> None:  # noqa: ANN001
    folder = next(m["ref"] for m in client.get("/api/models").json() if m["name"] == ids["model"])
    assert folder.startswith("/") and folder in client.get("/models").text  # the admin sees it
    with TestClient(app, headers=member.headers) as as_member:
        listed = next(m for m in as_member.get("/api/models").json() if m["name"] == ids["model"])
        assert listed["ref"] == HIDDEN_REF and listed["source"] == "local"
        for path in ("/api/models", "/models", "/runs/new"):
            assert folder not in as_member.get(path).text, path
        assert HIDDEN_REF in as_member.get("/models").text


def test_a_member_names_a_local_model_by_name_not_by_path(app, client: TestClient, ids: dict,  # noqa: ANN001
                                                          member: Account) -> None:
    folder = next(m["ref"] for m in client.get("/api/models").json() if m["name"] == ids["model"])
    upload = {"file": ("c.jsonl", json.dumps({"text": "hello"}).encode())}
    with TestClient(app, headers=member.headers) as as_member:
        dataset_id = as_member.post("/api/datasets", files=upload).json()["id"]
        by_path = as_member.post("/api/runs", json=_spec(folder, dataset_id))
        unknown = as_member.post("/api/runs", json=_spec(folder + "-nothing", dataset_id))
        assert by_path.status_code == unknown.status_code == 422, by_path.text
        assert by_path.json()["error"]["code"] == unknown.json()["error"]["code"] == "model_not_registered"
        by_name = as_member.post("/api/runs", json=_spec(ids["model"], dataset_id))
        assert by_name.status_code == 201, by_name.text
        run_id = by_name.json()["id"]
        details = as_member.get(f"/runs/{run_id}/details").text
        assert folder not in details and HIDDEN_REF in details
        for path in (f"/runs/{run_id}", f"/api/runs/{run_id}", "/api/models", "/runs/new"):
            assert folder not in as_member.get(path).text, path
        for named in (ids["model"], folder, str(Path(folder).parent)):  # a path typed in is never opened either
            estimate = as_member.post("/api/estimate", json=_spec(named, dataset_id))
            assert estimate.status_code == 200 and folder not in estimate.text, estimate.text
