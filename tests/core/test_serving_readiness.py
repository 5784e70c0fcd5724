"""Each server's rules for a LoRA adapter, checked on its config and tensor names. vLLM: what it refuses (DoRA,
modules_to_save, trained biases, embedding adapters, ranks past 512), the rank flag it needs, and the command;
SGLang, TGI and llama.cpp's server where they differ (no rank flag; GGUF files; one alpha for all layers; what TGI
would skip without a word)."""

from __future__ import annotations

import pytest

from app.core.adapter_import import Tensor
from app.core.serving_readiness import llama_cpp, sglang, tgi, vllm

LAYER = "base_model.model.model.layers.0"
TENSORS = [Tensor(f"{LAYER}.self_attn.{m}.lora_{s}.weight", "F32", (8, 64)) for m in ("q_proj", "v_proj")
           for s in "AB"]
CONFIG = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none"}


def test_a_plain_adapter_is_ready_with_the_command_that_serves_it() -> None:
    verdict = vllm(CONFIG, TENSORS, "/models/smollm2", "bot-v1")
    assert verdict.ready and verdict.problems == []
    assert verdict.command == "vllm serve /models/smollm2 --enable-lora --lora-modules bot-v1=/path/to/bot-v1"


@pytest.mark.parametrize(("change", "words"), [
    ({"use_dora": True}, "does not serve DoRA"),
    ({"modules_to_save": ["lm_head"]}, "no modules_to_save (lm_head)"),
    ({"bias": "lora_only"}, "without trained biases"),
    ({"r": 1024}, "above vLLM's largest --max-lora-rank (512)"),
])
def test_what_vllm_refuses_is_named_and_no_command_is_offered(change: dict, words: str) -> None:
    verdict = vllm({**CONFIG, **change}, TENSORS, "base", "bot-v1")
    assert not verdict.ready and words in verdict.problems[0] and verdict.command == ""


def test_an_embedding_adapter_is_refused() -> None:
    tensors = [*TENSORS, Tensor("base_model.model.model.embed_tokens.lora_embedding_A.weight", "F32", (8, 100))]
    tensors.append(Tensor("base_model.model.model.embed_tokens.lora_A.weight", "F32", (8, 100)))
    assert "not to embed_tokens" in vllm(CONFIG, tensors, "base", "x").problems[0]


@pytest.mark.parametrize(("rank", "flag"), [(16, ""), (24, " --max-lora-rank 32"), (320, " --max-lora-rank 320"),
                                            (400, " --max-lora-rank 512")])
def test_a_rank_past_the_default_gets_the_smallest_flag_that_fits(rank: int, flag: str) -> None:
    verdict = vllm({**CONFIG, "r": rank}, TENSORS, "base", "x")
    assert verdict.ready and verdict.command.endswith("x=/path/to/x" + flag)


def test_sglang_and_llama_cpp_serve_a_plain_adapter_with_their_own_commands() -> None:
    assert sglang(CONFIG, TENSORS, "/models/smollm2", "bot-v1").command == (
        "python -m sglang.launch_server --model-path /models/smollm2 --enable-lora --lora-paths bot-v1=/path/to/bot-v1")
    verdict = llama_cpp(CONFIG, TENSORS, "SmolLM2 135M", "bot-v1")
    assert verdict.ready
    assert verdict.command == "llama-server -m SmolLM2-135M-f16.gguf --lora bot-v1-lora-f16.gguf"


@pytest.mark.parametrize("server", [sglang, tgi, llama_cpp])
@pytest.mark.parametrize(("change", "words"), [({"use_dora": True}, "DoRA"), ({"modules_to_save": ["lm_head"]},
                                                                               "modules_to_save")])
def test_dora_and_modules_to_save_are_refused_by_every_server(server, change: dict, words: str) -> None:
    verdict = server({**CONFIG, **change}, TENSORS, "base", "bot-v1")
    assert not verdict.ready and words in verdict.problems[0] and verdict.command == ""


def test_where_servers_differ_a_high_rank_and_an_alpha_pattern() -> None:
    high = {**CONFIG, "r": 1024}
    assert not vllm(high, TENSORS, "base", "x").ready
    assert sglang(high, TENSORS, "base", "x").ready and llama_cpp(high, TENSORS, "base", "x").ready
    patterned = {**CONFIG, "alpha_pattern": {"q_proj": 32}}
    assert not llama_cpp(patterned, TENSORS, "base", "x").ready
    assert vllm(patterned, TENSORS, "base", "x").ready
    assert "alpha × sqrt(r)" in llama_cpp({**CONFIG, "use_rslora": True}, TENSORS, "base", "x").notes[0]


def test_tgi_serves_a_plain_adapter_with_its_launcher_and_refuses_what_it_would_skip_silently() -> None:
    verdict = tgi(CONFIG, TENSORS, "/models/smollm2", "bot-v1")
    assert verdict.ready
    assert verdict.command == ("text-generation-launcher --model-id /models/smollm2 "
                               "--lora-adapters bot-v1=/path/to/bot-v1")
    # TGI scales every layer by the config's one r and lora_alpha: a per-layer pattern would load mis-scaled.
    for pattern in ({"rank_pattern": {"q_proj": 16}}, {"alpha_pattern": {"q_proj": 32}}):
        refused = tgi({**CONFIG, **pattern}, TENSORS, "base", "x")
        assert not refused.ready and "one lora_alpha and r" in refused.problems[0] and refused.command == ""
    assert vllm({**CONFIG, "rank_pattern": {"q_proj": 16}}, TENSORS, "base", "x").ready
    # A high rank needs no flag there, and an lm_head adapter is one of its layers while embeddings are not.
    assert tgi({**CONFIG, "r": 1024}, TENSORS, "base", "x").ready
    head = [*TENSORS, Tensor("base_model.model.lm_head.lora_A.weight", "F32", (8, 64))]
    assert tgi(CONFIG, head, "base", "x").ready and not vllm(CONFIG, head, "base", "x").ready
    embedding = [*TENSORS, Tensor("base_model.model.model.embed_tokens.lora_A.weight", "F32", (8, 100))]
    assert "not to embed_tokens" in tgi(CONFIG, embedding, "base", "x").problems[0]
