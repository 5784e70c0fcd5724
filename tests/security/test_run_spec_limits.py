"""Run specs with out-of-range or contradictory values are refused with 422 naming the field; nothing is queued."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.core import workers
from app.core.models import Run


def _spec(ids: dict, **sections: dict) -> dict:
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]}}
    for section, values in sections.items():
        spec.setdefault(section, {}).update(values)
    return spec


# (id, sections to override, field named in the error)
CASES = [
    ("rank-0", {"lora": {"r": 0}}, "lora.r"),
    ("alpha-negative", {"lora": {"alpha": -16}}, "lora.alpha"),
    ("dropout-1", {"lora": {"dropout": 1.0}}, "lora.dropout"),
    ("empty-targets", {"lora": {"target_modules": []}}, "lora.target_modules"),
    ("blank-targets", {"lora": {"target_modules": [" ", ""]}}, "lora.target_modules"),
    ("lr-0", {"training": {"learning_rate": 0}}, "training.learning_rate"),
    ("lr-above-1", {"training": {"learning_rate": 3.0}}, "training.learning_rate"),
    ("batch-0", {"training": {"per_device_batch_size": 0}}, "training.per_device_batch_size"),
    ("max-steps-minus-2", {"training": {"max_steps": -2}}, "training.max_steps"),
    ("eval-fraction-0.6", {"data": {"eval_fraction": 0.6}}, "data.eval_fraction"),
    ("unknown-optimizer", {"training": {"optimizer": "lion_32bit"}}, "training.optimizer"),
    ("unknown-method", {"method": "full"}, "method"),
    ("unknown-field", {"training": {"learning_rte": 1e-4}}, "training.learning_rte"),
    ("quantization-with-lora", {"quantization": {"quant_type": "fp4"}}, "quantization"),
    ("compute-dtype-with-lora", {"quantization": {"compute_dtype": "float16"}}, "quantization"),
    ("seq-length-too-small", {"data": {"max_seq_length": 4}}, "data.max_seq_length"),
]


def _runs(session) -> int:
    session.rollback()
    return session.scalar(select(func.count()).select_from(Run))


def _post(client, spec: dict):  # noqa: ANN202
    return client.post("/api/runs", json=spec)


def _assert_422(response, field: str) -> dict:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"] and error["code"], error
    return error


@pytest.mark.parametrize(("override", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_out_of_range_spec_gets_422_naming_the_field(client, session, ids, override: dict, field: str) -> None:
    spec = _spec(ids)
    for key, value in override.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    before = _runs(session)
    _assert_422(_post(client, spec), field)
    assert _runs(session) == before


def test_quantization_settings_are_fine_with_qlora(client, ids) -> None:
    spec = _spec(ids, quantization={"quant_type": "fp4", "compute_dtype": "float16"})
    spec["method"] = "qlora"
    assert _post(client, spec).status_code == 201


def test_max_length_above_the_models_context_names_the_context(client, session, ids, tmp_path: Path) -> None:
    folder = tmp_path / "short-context"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    (folder / "model.safetensors").write_bytes(b"")  # registration wants safetensors; the web never opens it
    name = f"short-{uuid.uuid4().hex[:6]}"
    assert client.post("/api/models", json={"name": name, "ref": str(folder)}).status_code == 201
    spec = _spec(ids, model={"base_model": name}, data={"max_seq_length": 1024})
    error = _assert_422(_post(client, spec), "data.max_seq_length")
    assert error["code"] == "longer_than_context" and "512" in error["message"]
    spec["data"]["max_seq_length"] = 512
    assert _post(client, spec).status_code == 201


@pytest.fixture
def announce_worker(resources):  # noqa: ANN201
    """Announce a fake live worker of a given kind, removed after the test."""
    names: list[str] = []

    def announce(kind: str) -> None:
        # "zzz" sorts after real workers, so estimates picking the first live worker are not disturbed.
        names.append(f"zzz-test-{uuid.uuid4().hex[:8]}")
        workers.announce(resources.redis, names[-1], {"kind": kind, "name": kind, "memory_gb": 1.0})

    yield announce
    for name in names:
        resources.redis.delete(workers.PREFIX + name)


@pytest.mark.parametrize("optimizer", ["paged_adamw_8bit", "paged_adamw_32bit", "adamw_8bit"])
def test_cuda_only_optimizer_is_refused_when_no_live_worker_has_cuda(client, ids, resources, announce_worker,
                                                                      optimizer: str) -> None:
    if any(w.get("kind") == "cuda" for w in workers.live_workers(resources.redis)):
        pytest.skip("a CUDA worker is live on this Redis")
    announce_worker("cpu")
    spec = _spec(ids, training={"optimizer": optimizer})
    error = _assert_422(_post(client, copy.deepcopy(spec)), "training.optimizer")
    assert error["code"] == "optimizer_needs_cuda"
    announce_worker("cuda")
    assert _post(client, spec).status_code == 201
