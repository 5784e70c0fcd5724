"""The estimator: analytic parameter counts match real models, LoRA counts match peft, verdicts and advice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.planning.device_profiles import GPU_PROFILES, cpu_profile, worker_profile
from worker.planning.estimate import ModelShape, estimate, lora_params
from worker.planning.presets import presets
from worker.planning.spec import RunSpec

LLAMA3_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
             "max_position_embeddings": 8192, "model_type": "llama"}


def spec(**sections: dict) -> RunSpec:
    return RunSpec.model_validate({"data": {"path": "x.jsonl"}, **sections})


def meta_param_count(config: dict) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**config))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", [LLAMA3_8B, {**LLAMA3_8B, "num_hidden_layers": 2, "tie_word_embeddings": True,
                                                "head_dim": 64, "attention_bias": True}])
def test_parameter_count_matches_a_real_model(config: dict) -> None:
    assert ModelShape.from_config(config).total_params() == meta_param_count(config)


def test_parameter_count_of_the_tiny_model(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_model_dir / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert ModelShape.from_config(config).total_params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("targets", ["attention", "all-linear", ["q_proj", "k_proj", "down_proj"]])
def test_trainable_lora_params_match_peft(tiny_model_dir: Path, targets) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from worker.trainer.model import peft_config

    run = spec(model={"base_model": str(tiny_model_dir)}, lora={"r": 8, "target_modules": targets})
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), peft_config(run))
    trainable, _ = model.get_nb_trainable_parameters()
    shape = ModelShape.from_config(json.loads((tiny_model_dir / "config.json").read_text()))
    assert lora_params(run, shape) == trainable


def test_a_huge_spec_does_not_fit_and_the_fixes_save_memory() -> None:
    shape, small = ModelShape.from_config(LLAMA3_8B), GPU_PROFILES["gpu-24"]
    run = spec(method="lora", data={"path": "x", "max_seq_length": 4096}, training={"per_device_batch_size": 8})
    result = estimate(run, shape, small, dataset_tokens=1_000_000)
    assert result.available and not result.fits and result.recommended_method == "qlora"
    changes = {r.change.split("=")[0]: r for r in result.recommendations}
    assert {"method", "training.per_device_batch_size"} <= changes.keys()
    assert all(r.peak_memory_gb < result.peak_memory_gb for r in result.recommendations)
    assert any(r.fits for r in result.recommendations)


def test_a_small_spec_fits_and_prefers_lora() -> None:
    shape = ModelShape.from_config({**LLAMA3_8B, "hidden_size": 576, "intermediate_size": 1536,
                                    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                                    "vocab_size": 49152, "tie_word_embeddings": True})
    result = estimate(spec(data={"path": "x", "max_seq_length": 256}), shape, GPU_PROFILES["gpu-80"], 100_000)
    assert result.fits and result.recommended_method == "lora"
    assert 0 < result.trainable_share < 0.1 and result.time_s and result.time_s > 0
    assert set(result.breakdown) == {"weights", "adapters", "activations", "logits", "runtime"}


def test_qlora_weights_and_checkpointing_shrink_memory() -> None:
    shape, gpu = ModelShape.from_config(LLAMA3_8B), GPU_PROFILES["gpu-80"]
    lora = estimate(spec(method="lora"), shape, gpu, None)
    qlora = estimate(spec(method="qlora"), shape, gpu, None)
    checkpointed = estimate(spec(training={"gradient_checkpointing": True}), shape, gpu, None)
    # Embeddings and the untied head stay unquantised (fp32 after prepare_model_for_kbit_training).
    assert qlora.breakdown["weights"] < lora.breakdown["weights"] / 1.8
    assert checkpointed.breakdown["activations"] < lora.breakdown["activations"] / 5
    assert lora.time_s is None  # no dataset size, no max_steps: the time is unknown


def test_worker_profile_and_cpu_profile() -> None:
    gpu = worker_profile({"hostname": "w1", "kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_gb": 79.1,
                          "count": 1, "bf16": True})
    assert gpu.kind == "cuda" and gpu.memory_gb == 79.1 and gpu.flops > 2e14
    assert cpu_profile().kind == "cpu" and cpu_profile().memory_gb > 0


def test_a_cpu_worker_on_the_system_malloc_is_sized_for_its_fragmented_heap() -> None:
    announced = {"hostname": "w2", "kind": "cpu", "name": "2-core CPU", "memory_gb": 24, "bf16": True}
    on_glibc, on_tcmalloc = worker_profile(announced), worker_profile({**announced, "allocator": "tcmalloc"})
    assert (on_glibc.allocator, on_tcmalloc.allocator) == ("system", "tcmalloc")  # older workers announce none
    shape = ModelShape.from_config({**LLAMA3_8B, "num_hidden_layers": 4})
    glibc, tcmalloc = (estimate(spec(), shape, device, None) for device in (on_glibc, on_tcmalloc))
    assert glibc.breakdown["activations"] > 1.4 * tcmalloc.breakdown["activations"]
    assert glibc.breakdown["weights"] == tcmalloc.breakdown["weights"]


def test_incomplete_config_is_refused() -> None:
    with pytest.raises(ValueError, match="hidden_size"):
        ModelShape.from_config({"model_type": "llama"})


def test_presets_have_titles_and_keep_the_data_and_model_choice() -> None:
    found = presets()
    assert {"quick-qlora", "balanced-lora", "high-quality"} <= found.keys()
    for preset in found.values():
        assert preset.title and preset.description
        assert "base_model" not in preset.overrides().get("model", {})
        assert "path" not in preset.overrides()["data"]


def test_gpu_speeds_are_the_parts_own_in_the_precision_it_trains_in() -> None:
    def flops(name: str, bf16: bool = True, count: int = 1) -> float:
        return worker_profile({"kind": "cuda", "name": name, "memory_gb": 80, "bf16": bf16, "count": count}).flops

    assert flops("NVIDIA H100 PCIe") < flops("NVIDIA H100 NVL") < flops("NVIDIA H100 80GB HBM3")  # SXM
    assert flops("NVIDIA B200") > 2 * flops("NVIDIA H100 80GB HBM3")
    assert flops("NVIDIA GeForce RTX 3090") < flops("NVIDIA RTX A6000") / 4  # fp32 accumulation: half rate
    t4 = flops("Tesla T4", bf16=False)  # no bf16: trained under fp16 autocast, at its fp16 tensor cores' 65
    assert t4 == pytest.approx(65e12 * 0.30)


def test_a_job_is_estimated_on_one_gpu_whatever_the_host_has() -> None:
    from worker.planning.estimate import tokens_per_second

    shape = ModelShape.from_config(LLAMA3_8B)
    one, eight = (worker_profile({"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "bf16": True,
                                  "count": n}) for n in (1, 8))
    assert tokens_per_second(spec(), shape, eight) == tokens_per_second(spec(), shape, one)


def test_a_run_on_several_gpus_takes_their_global_batch_and_shares_the_time() -> None:
    from worker.planning.sizing import plan

    shape = ModelShape.from_config(LLAMA3_8B)
    h100 = worker_profile({"kind": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "bf16": True,
                           "count": 8})
    steps = {"max_steps": 100, "per_device_batch_size": 2}
    one, four = (estimate(spec(training=steps, resources={"gpus": n}), shape, h100, None) for n in (1, 4))
    assert four.tokens == 4 * one.tokens  # max_steps of the global batch
    assert four.peak_memory_gb == one.peak_memory_gb  # each GPU holds a whole replica
    assert four.time_s - four.startup_s == pytest.approx(one.time_s - one.startup_s, rel=0.01)  # 4x on 4 GPUs
    epochs = {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "num_epochs": 1}
    assert plan(spec(training=epochs, resources={"gpus": 4}), 1000).steps == 63  # 1000 rows / (2 x 2 x 4)
    assert plan(spec(training=epochs), 1000).steps == 250
