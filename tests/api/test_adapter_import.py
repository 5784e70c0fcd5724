"""Importing a PEFT LoRA adapter trained elsewhere as a registry version: a real one (made with PEFT on the tiny
model) is stored and served as name:vN; pickle files, a config PEFT cannot read, a truncated file, shapes from
another model size and an unknown base are each a precise 4xx, and nothing is stored."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from app.core.generation.adapter_hash import adapter_files
from tests.support.adapters import make_adapter

CHAT = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def peft_folder(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PEFT LoRA adapter on the tiny model (q, v, o projections, r 4)."""
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("import") / "adapter", seed=11)


@pytest.fixture
def tiny_base(client, tiny_model_dir: Path) -> str:  # noqa: ANN001
    """The tiny model registered under a fresh name (a local base: its config.json is read for the shape check)."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/models", json={"name": name, "ref": str(tiny_model_dir)}).status_code == 201
    return name


def _import(client, name: str, base: str, config: bytes, weights: bytes,  # noqa: ANN001
            names: tuple[str, str] = ("adapter_config.json", "adapter_model.safetensors")):  # noqa: ANN202
    return client.post("/api/adapters/import", data={"name": name, "base_model": base},
                       files={"config": (names[0], config, "application/json"),
                              "weights": (names[1], weights, "application/octet-stream")})


def test_a_real_peft_adapter_is_imported_and_served(client, session, tiny_base: str, peft_folder: Path,  # noqa: ANN001
                                                    standin) -> None:
    config, weights = (peft_folder / "adapter_config.json").read_bytes(), (
        peft_folder / "adapter_model.safetensors").read_bytes()
    made = _import(client, "imported", tiny_base, config, weights)
    assert made.status_code == 201, made.text
    version = made.json()
    assert (version["version"], version["source"], version["run_id"], version["base_name"]) == (
        1, "import", None, tiny_base)
    assert version["warnings"] == [] and version["lineage"]["import"]["r"] == 4
    stored = {f.name: f.size for f in adapter_files(session, 0, version_id=_version_id(session, "imported"))}
    assert stored == {"adapter_config.json": len(config), "adapter_model.safetensors": len(weights)}
    answer = client.post("/v1/chat/completions", json={"model": "imported:v1", "messages": CHAT})
    assert answer.status_code == 200, answer.text
    sent = standin.requests[-1]
    assert sent.adapter.sha256 == version["sha256"] and sent.base.name == tiny_base
    verdicts = {v["server"]: v for v in client.get("/api/adapters/imported/versions/1/readiness").json()}
    assert list(verdicts) == ["vllm", "sglang", "tgi", "llama.cpp"]
    vllm = verdicts["vllm"]
    assert vllm["ready"], vllm
    assert verdicts["tgi"]["ready"] and "--lora-adapters imported-v1=" in verdicts["tgi"]["command"]
    assert vllm["command"].startswith("vllm serve ") and "--lora-modules imported-v1=" in vllm["command"]
    assert 'id="serve-vllm-v1" data-ready="true"' in client.get("/adapters/imported").text


def _version_id(session, name: str) -> int:  # noqa: ANN001
    from sqlalchemy import select

    from app.core.models import AdapterVersion, RegisteredAdapter

    return session.scalars(select(AdapterVersion.id).join(RegisteredAdapter).where(
        RegisteredAdapter.name == name)).first()


def _other_size_weights() -> bytes:
    """A LoRA pair for q_proj sized for a model with hidden size 128 (the tiny model's is 64)."""
    path = Path(f"/tmp/other-{uuid.uuid4().hex}.safetensors")
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{prefix}.lora_A.weight": np.zeros((4, 128), np.float32),
               f"{prefix}.lora_B.weight": np.zeros((128, 4), np.float32)}, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.mark.parametrize("case", ["pickle", "not_json", "not_lora", "truncated", "shape", "rank", "base"])
def test_bad_imports_are_refused_naming_what_is_wrong(client, tiny_base: str, peft_folder: Path,  # noqa: ANN001
                                                      case: str) -> None:
    config = json.loads((peft_folder / "adapter_config.json").read_text())
    weights = (peft_folder / "adapter_model.safetensors").read_bytes()
    names, base = ("adapter_config.json", "adapter_model.safetensors"), tiny_base
    expected = {"pickle": (422, "pickle_refused", "safe_serialization=True"),
                "not_json": (422, "config_not_json", "adapter_config.json is not JSON"),
                "not_lora": (422, "not_lora", "only LoRA adapters"),
                "truncated": (422, "truncated", "truncated"),
                "shape": (422, "shape_mismatch", "in_features 128, but the base's q_proj has 64"),
                "rank": (422, "rank_mismatch", "says r = 8"),
                "base": (404, "model_not_found", "No base model is registered as 'nope'")}[case]
    raw = json.dumps(config).encode()
    if case == "pickle":
        names = ("adapter_config.json", "adapter_model.bin")
    elif case == "not_json":
        raw = b"{r: 4"
    elif case == "not_lora":
        raw = json.dumps({**config, "peft_type": "PREFIX_TUNING"}).encode()
    elif case == "truncated":
        weights = weights[:-100]
    elif case == "shape":
        weights = _other_size_weights()
    elif case == "rank":
        raw = json.dumps({**config, "r": 8}).encode()
    elif case == "base":
        base = "nope"
    response = _import(client, "refused", base, raw, weights, names)
    status, code, words = expected
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert client.get("/api/adapters/refused").status_code == 404  # nothing half-stored


def test_a_version_is_checked_against_its_base_before_use(client, tiny_model_dir: Path, peft_folder: Path,  # noqa: ANN001
                                                          tmp_path: Path, standin) -> None:
    folder = tmp_path / "base"
    shutil.copytree(tiny_model_dir, folder)
    base = f"copy-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/models", json={"name": base, "ref": str(folder)}).status_code == 201
    made = _import(client, "checked", base, (peft_folder / "adapter_config.json").read_bytes(),
                   (peft_folder / "adapter_model.safetensors").read_bytes())
    assert made.status_code == 201, made.text
    check = "/api/adapters/checked/versions/1/compatibility"
    assert client.get(check).json() == {"compatible": True, "problems": [], "warnings": []}

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rope_theta": 1234.0}))  # drift, sizes the same
    drifted = client.get(check).json()
    assert drifted["compatible"] and drifted["warnings"] == [
        "config.json of the base model changed since this version was registered"]
    assert client.post("/v1/chat/completions", json={"model": "checked:v1", "messages": CHAT}).status_code == 200

    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 128, "head_dim": 16}))
    broken = client.get(check).json()
    assert not broken["compatible"] and "_features 64, but the base's" in broken["problems"][0]
    assert "has 128 (a different model or model size)" in broken["problems"][0]
    refused = client.post("/v1/chat/completions", json={"model": "checked:v1", "messages": CHAT})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "adapter_incompatible"
    assert "cannot be applied to" in refused.json()["error"]["message"]
    page = client.get("/adapters/checked").text
    assert 'data-compatible="false"' in page and "Cannot be applied" in page
