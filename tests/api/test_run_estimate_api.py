"""A run keeps the time estimate it was queued with, and the run API shows it (to set beside how long it took)."""

from __future__ import annotations

from pathlib import Path


def test_a_run_is_queued_with_its_time_estimate(client, ids: dict, tiny_model_dir: Path) -> None:
    model = client.post("/api/models", json={"name": f"est-{ids['model']}", "ref": str(tiny_model_dir)}).json()
    spec = {"method": "qlora", "model": {"base_model": model["name"]},
            "data": {"dataset_id": ids["dataset_id"], "max_seq_length": 64},
            "training": {"max_steps": 30, "per_device_batch_size": 2}}
    created = client.post("/api/runs", json=spec)
    assert created.status_code == 201, created.text
    estimate = client.get(f"/api/runs/{created.json()['id']}").json()["estimate"]
    assert estimate["tokens"] == 30 * 2 * 64 and estimate["tokens_per_second"] > 0
    assert 0 < estimate["low_s"] < estimate["time_s"] < estimate["high_s"]
    assert estimate["time_s"] >= estimate["startup_s"] > 0 and estimate["device"] and estimate["worker"]
    assert isinstance(estimate["measured"], bool)


def test_a_run_of_a_model_of_unknown_shape_has_no_estimate(client, ids: dict) -> None:
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]},
            "training": {"max_steps": 3}}
    created = client.post("/api/runs", json=spec)  # ids' model folder has an empty config.json
    assert created.status_code == 201, created.text
    assert created.json()["estimate"] is None
