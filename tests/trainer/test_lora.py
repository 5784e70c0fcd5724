"""LoRA and QLoRA on the tiny model: loss falls, only adapters change, the sink hears the run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import worker.trainer.loop as loop
from worker.trainer.sinks import ListSink


def _capture_model(monkeypatch) -> dict:
    """Keep the model train() builds so the test can inspect its weights."""
    seen: dict = {}
    real = loop.load_model

    def load_and_keep(*args, **kwargs):
        seen["model"] = real(*args, **kwargs)
        return seen["model"]

    monkeypatch.setattr(loop, "load_model", load_and_keep)
    return seen


def _losses(sink: ListSink) -> list[float]:
    return [m["loss"] for m in sink.metrics() if "loss" in m]


def test_lora_learns_and_changes_only_adapter_weights(make_spec, tiny_model: Path, tmp_path, monkeypatch) -> None:
    seen, sink = _capture_model(monkeypatch), ListSink()
    result = loop.train(make_spec(data={"eval_fraction": 0.1}, training={"eval_steps": 10}), tmp_path, sink)
    losses = _losses(sink)
    assert result.status == "succeeded" and result.steps == 25
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    trained = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in seen["model"].state_dict().items() if "lora_" not in k}
    assert trained.keys() == base.keys()
    # Frozen block linears may be stored in bf16 (CPUs with bf16 autocast): unchanged up to that rounding.
    assert all(torch.equal(trained[k], base[k].to(trained[k].dtype)) for k in base)
    types = [e["type"] for e in sink.events]
    assert types.index("started") < types.index("metric") and types[-1] == "finished"
    steps = [m["step"] for m in sink.metrics() if "loss" in m]
    assert steps == sorted(steps) and steps[-1] == 25
    assert any("eval_loss" in m for m in sink.metrics()) and sink.events[-1]["final"]["eval_loss"] is not None
    assert all(m["tokens_seen"] > 0 and m["memory_mb"] > 0 for m in sink.metrics())


def test_qlora_learns_on_cpu(make_spec, tmp_path) -> None:
    sink = ListSink()
    result = loop.train(make_spec(method="qlora"), tmp_path, sink)
    losses = _losses(sink)
    assert result.status == "succeeded"
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_should_stop_cancels_cleanly_and_saves_a_loadable_adapter(make_spec, tiny_model: Path, tmp_path) -> None:
    from peft import PeftModel

    sink, polls = ListSink(), []

    def stop_after_three_steps() -> bool:  # polled once per step end
        polls.append(1)
        return len(polls) >= 3

    result = loop.train(make_spec(training={"max_steps": 1000}), tmp_path, sink, should_stop=stop_after_three_steps)
    assert result.status == "cancelled" and result.steps == 3
    assert sink.events[-1]["type"] == "finished" and sink.events[-1]["status"] == "cancelled"
    adapter = tmp_path / "adapter"
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "spec.yaml", "README.md", "tokenizer.json"} <= names
    assert not any(n.endswith(".bin") for n in names)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    assert any("lora_A" in n for n, _ in model.named_parameters())
