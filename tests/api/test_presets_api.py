"""Presets over the API: listed as shipped, filled in and fitted to a dataset's size, unknown keys a 404."""

from __future__ import annotations


def test_presets_are_listed_as_shipped(client) -> None:
    presets = {p["key"]: p for p in client.get("/api/presets").json()}
    assert {"quick-qlora", "balanced-lora", "high-quality"} <= set(presets)
    assert presets["quick-qlora"]["spec"]["method"] == "qlora" and presets["quick-qlora"]["title"] == "Quick QLoRA"


def test_a_preset_for_a_dataset_is_filled_in_and_fitted(client, ids) -> None:
    out = client.get("/api/presets/balanced-lora", params={"dataset_id": ids["dataset_id"], "model": ids["model"]})
    assert out.status_code == 200, out.text
    body = out.json()
    spec = body["spec"]
    assert spec["model"]["base_model"] == ids["model"] and spec["data"]["dataset_id"] == ids["dataset_id"]
    assert body["spec"]["data"]["path"] is None and body["spec"]["name"] == ""
    assert body["fitted"] and body["plan"].endswith("on 1 row")  # the ids fixture's dataset has one row
    assert client.post("/api/runs", json=body["spec"]).status_code == 201


def test_unknown_presets_and_other_users_datasets_are_404(client, ids) -> None:
    missing = client.get("/api/presets/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "preset_not_found"
    assert client.get("/api/presets/quick-qlora", params={"dataset_id": 2**31 - 1}).status_code == 404
