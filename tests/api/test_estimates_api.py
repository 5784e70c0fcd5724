"""POST /api/estimate: numbers for a local model with a config.json, a reason for a hub id."""

from __future__ import annotations

import uuid
from pathlib import Path


def register(client, ref: str) -> str:
    name = f"est-{uuid.uuid4().hex[:8]}"
    response = client.post("/api/models", json={"name": name, "ref": ref})
    assert response.status_code == 201, response.text
    return name


def test_estimate_for_a_local_model(client, tiny_model_dir: Path) -> None:
    name = register(client, str(tiny_model_dir))
    body = {"method": "lora", "model": {"base_model": name}, "data": {"path": "x.jsonl", "max_seq_length": 128},
            "training": {"max_steps": 10, "per_device_batch_size": 2}}
    response = client.post("/api/estimate?device=gpu-24", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["available"] and result["fits"] and result["device"]["key"] == "gpu-24"
    assert result["peak_memory_gb"] > 0 and result["time_s"] is not None and result["tokens"] == 10 * 2 * 128
    assert 0 < result["trainable_params"] < result["total_params"]
    assert result["trainable_share"] == result["trainable_params"] / result["total_params"]
    assert {"weights", "activations", "logits"} <= result["breakdown"].keys()
    assert {r["change"].split("=")[0] for r in result["recommendations"]} >= {"method"}


def test_estimate_unavailable_for_a_hub_model(client) -> None:
    name = register(client, "HuggingFaceTB/SmolLM2-135M-Instruct")
    response = client.post("/api/estimate", json={"model": {"base_model": name}, "data": {"path": "x.jsonl"}})
    assert response.status_code == 200
    assert response.json()["available"] is False and "Hugging Face id" in response.json()["reason"]


def test_estimate_rejects_an_invalid_spec(client) -> None:
    response = client.post("/api/estimate", json={"data": {"path": "x"}, "lora": {"r": 0}})
    assert response.status_code == 422


def test_estimate_devices_lists_profiles(client) -> None:
    keys = {d["key"] for d in client.get("/api/estimate/devices").json()}
    assert keys and (keys >= {"cpu", "gpu-24", "gpu-40", "gpu-80"} or "cpu" not in keys)
