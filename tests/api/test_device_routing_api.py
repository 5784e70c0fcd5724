"""A run is routed to a device class when it is created (issue 17, item 3): its class is stored, shown, and its
message goes to that class's queue on the real Redis; a run no class can hold is refused naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Llama-2-7B's shape (config.json only: the web never opens weights) and a Llama-3.1-405B-sized one.
LLAMA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}
LLAMA_405B = {"model_type": "llama", "hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 126,
              "num_attention_heads": 128, "num_key_value_heads": 8, "vocab_size": 128256}


def _model(client, tmp_path: Path, name: str, config: dict) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    response = client.post("/api/models", json={"name": f"{name}-{tmp_path.name}", "ref": str(folder)})
    assert response.status_code == 201, response.text
    return response.json()["name"]


def _spec(model: str, dataset_id: int, device_class: str | None = None, **top) -> dict:
    spec = {"model": {"base_model": model}, "data": {"dataset_id": dataset_id, "max_seq_length": 512},
            "training": {"per_device_batch_size": 1}, **top}
    return spec | ({"resources": {"device_class": device_class}} if device_class else {})


@pytest.fixture
def waiting(resources, settings):  # noqa: ANN201
    """How many messages wait in a class's queue now (Celery's Redis transport keeps a queue in a list of its name)."""
    return lambda device_class: resources.redis.llen(f"{settings.queue}.{device_class}" if device_class
                                                     else settings.queue)


def test_a_7b_base_goes_to_a_gpu_with_room_and_its_message_to_that_queue(client, ids, tmp_path, waiting) -> None:
    model = _model(client, tmp_path, "llama7b", LLAMA_7B)
    qlora = _spec(model, ids["dataset_id"], method="qlora")
    before = {c: waiting(c) for c in ("gpu8", "gpu12", "gpu16", None)}
    response = client.post("/api/runs", json=qlora)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["device_class"] in {"gpu8", "gpu12", "gpu16"}, run["device_class"]  # 4-bit 7B: a small card
    assert waiting(run["device_class"]) == before[run["device_class"]] + 1
    assert waiting(None) == before[None]  # not on the queue every worker (a CPU one too) takes
    lora = client.post("/api/runs", json=_spec(model, ids["dataset_id"])).json()
    assert lora["device_class"] in {"gpu24", "gpu32"}  # 13.5 GB of bf16 weights and the rest: a bigger card
    page = client.get(f"/runs/{lora['id']}")
    assert f"{lora['device_class']} workers" in page.text
    assert f"Routed to {lora['device_class']} workers" in client.get("/runs/table?status=queued").text


def test_small_bases_go_to_any_worker_unless_the_person_chooses(client, ids, waiting) -> None:
    before = waiting(None), waiting("cpu")
    anywhere = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"]))
    assert anywhere.status_code == 201 and anywhere.json()["device_class"] is None
    chosen = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"], "cpu"))
    assert chosen.status_code == 201 and chosen.json()["device_class"] == "cpu"
    assert (waiting(None), waiting("cpu")) == (before[0] + 1, before[1] + 1)
    timeline = client.get(f"/api/runs/{chosen.json()['id']}/timeline").json()
    assert "for a cpu worker" in timeline[0]["message"], timeline


def test_a_run_no_gpu_class_can_hold_is_refused_naming_the_field(client, ids, tmp_path) -> None:
    model = _model(client, tmp_path, "llama405b", LLAMA_405B)
    response = client.post("/api/runs", json=_spec(model, ids["dataset_id"]))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "no_device_class" and error["field"] == "resources.device_class"
    assert "QLoRA" in error["message"]
    bad = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"], "gpu23"))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "resources.device_class"


def test_a_run_on_several_gpus_goes_to_a_gpu_class(client, ids, tmp_path) -> None:
    model = _model(client, tmp_path, "llama7b", LLAMA_7B)
    both = client.post("/api/runs", json=_spec(model, ids["dataset_id"], resources={"gpus": 2}))
    assert both.status_code == 201, both.text
    assert both.json()["device_class"] in {"gpu24", "gpu32"}  # each GPU holds a whole replica: sized as for one
    assert both.json()["spec"]["resources"]["gpus"] == 2
    unknown = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"], resources={"gpus": 2}))
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "resources.device_class", unknown.text
    assert "choose a GPU class" in unknown.json()["error"]["message"]  # "any worker" cannot lend 2 GPUs
    on_cpu = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"],
                                                 resources={"gpus": 2, "device_class": "cpu"}))
    assert on_cpu.status_code == 422 and "needs a GPU worker" in on_cpu.text, on_cpu.text
    too_many = client.post("/api/runs", json=_spec(ids["model"], ids["dataset_id"], resources={"gpus": 9}))
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "resources.gpus", too_many.text
