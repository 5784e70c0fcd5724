"""LoRA and QLoRA on the tiny model: loss falls, only adapters change, the sink hears the run."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    # The host's resident memory is its own series, at most the peak it is part of.
    assert all(0 < m["host_rss_mb"] <= m["memory_mb"] + 1 for m in sink.metrics() if "loss" in m)


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


# None: once per epoch (the Trainer ends the epoch it stops in, and would evaluate there); 3: at the stop's step.
@pytest.mark.parametrize("eval_steps", [None, 3])
def test_a_stop_skips_the_evaluation_it_would_have_started(make_spec, tmp_path, eval_steps) -> None:
    sink, polls = ListSink(), []

    def stop_after_three_steps() -> bool:
        polls.append(1)
        return len(polls) >= 3

    spec = make_spec(data={"eval_fraction": 0.2}, training={"max_steps": 1000, "eval_steps": eval_steps,
                                                             "logging_steps": 1, "per_device_batch_size": 2})
    result = loop.train(spec, tmp_path, sink, should_stop=stop_after_three_steps)
    assert result.status == "cancelled" and result.steps == 3
    evals = [e["step"] for e in sink.events if e["type"] == "metric" and "eval_loss" in e]
    assert 3 not in evals, evals


@pytest.mark.parametrize("variant", ["use_rslora", "use_dora"])
def test_rslora_and_dora_train_and_save_an_adapter_peft_loads_as_such(make_spec, tiny_model: Path, tmp_path,
                                                                      variant: str) -> None:
    import json

    from peft import PeftModel

    sink = ListSink()
    result = loop.train(make_spec(lora={"r": 8, "alpha": 16, "dropout": 0.0, variant: True},
                                  training={"max_steps": 4, "save_steps": None}), tmp_path, sink)
    assert result.status == "succeeded" and result.steps == 4
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config[variant] is True and config["use_dora" if variant == "use_rslora" else "use_rslora"] is False
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter")
    magnitudes = [n for n, _ in model.named_parameters() if "lora_magnitude_vector" in n]
    assert bool(magnitudes) == (variant == "use_dora")  # DoRA's learned magnitudes were saved and loaded
    losses = _losses(sink)
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]  # finite, and it learned
