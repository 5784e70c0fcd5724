"""The fused LoRA forward (worker.trainer.lora_fusion) computes what PEFT's does: the same outputs and gradients
without dropout, in fp32 and under bf16 autocast; one mask per shared input with dropout; PEFT's own forward
whenever adapters are disabled or merged; and the saved file is PEFT's."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.support.peft_models import lora_model, loss_and_grads
from worker.trainer.lora_fusion import SharedInput, fuse_lora_forward


@pytest.mark.parametrize(("autocast", "tol"), [(False, 1e-5), (True, 2e-2)])
def test_same_loss_and_gradients_as_pefts_forward(tiny_model, autocast: bool, tol: float) -> None:
    reference = lora_model(tiny_model)
    fused = copy.deepcopy(reference)
    layers = fuse_lora_forward(fused)
    assert layers == 7 * fused.config.num_hidden_layers
    ids = torch.randint(0, fused.config.vocab_size, (2, 24))
    want_loss, want = loss_and_grads(reference, ids, autocast)
    got_loss, got = loss_and_grads(fused, ids, autocast)
    torch.testing.assert_close(got_loss, want_loss, rtol=tol / 10, atol=0)
    assert want.keys() == got.keys() and any("lora_A" in n for n in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol * want[name].abs().max().item(),
                                   msg=name)


def test_layers_reading_one_input_share_one_mask_and_one_matmul(tiny_model) -> None:
    model = lora_model(tiny_model, dropout=0.5)
    from worker.trainer.dropout import use_lean_dropout

    use_lean_dropout(model)
    fuse_lora_forward(model)
    attention = model.base_model.model.model.layers[0].self_attn
    seen: list[torch.Tensor] = []
    hook = attention.q_proj.lora_dropout["default"].register_forward_hook(lambda m, i, o: seen.append(o))
    calls: list[int] = []
    real = torch.nn.functional.linear
    x = torch.randn(1, 6, model.config.hidden_size)
    try:
        torch.nn.functional.linear = lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k)
        attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
    finally:
        torch.nn.functional.linear = real
        hook.remove()
    assert len(seen) == 1  # one dropout for the three layers
    assert 12 in calls  # one matmul against the three A weights stacked (r 4 each)
    for layer in ("k_proj", "v_proj"):  # k and v never ran their own dropout
        assert getattr(attention, layer).lora_dropout["default"]._forward_hooks == {}


def test_a_layer_called_with_another_tensor_computes_its_own(tiny_model) -> None:
    model = lora_model(tiny_model)
    reference = copy.deepcopy(model)
    fuse_lora_forward(model)
    fused = model.base_model.model.model.layers[0].self_attn
    plain = reference.base_model.model.model.layers[0].self_attn
    x, y = torch.randn(1, 5, model.config.hidden_size), torch.randn(1, 5, model.config.hidden_size)
    torch.testing.assert_close(fused.q_proj(x), plain.q_proj(x))
    torch.testing.assert_close(fused.k_proj(y), plain.k_proj(y))  # not q's input: its own projection
    torch.testing.assert_close(fused.v_proj(x), plain.v_proj(x))


def test_a_group_holds_nothing_once_every_layer_took_its_part() -> None:
    class Layer:
        active_adapters = ["default"]

    group = SharedInput([Layer(), Layer()])
    first, second = group.members
    group._input, group._parts = torch.ones(1), {id(first): torch.ones(1), id(second): torch.ones(1)}
    x = group._input
    group.lora_hidden(first, x)
    assert group._input is x
    group.lora_hidden(second, x)
    assert group._input is None and group._parts == {}


def test_disabled_or_merged_adapters_take_pefts_forward(tiny_model) -> None:
    model = lora_model(tiny_model)
    reference = copy.deepcopy(model)
    fuse_lora_forward(model)
    ids = torch.randint(0, model.config.vocab_size, (1, 10))
    with model.disable_adapter(), reference.disable_adapter():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    model.merge_adapter()
    reference.merge_adapter()
    torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-4, atol=1e-5)


def test_dora_layers_are_left_to_peft(tiny_model) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True))
    assert fuse_lora_forward(model) == 0


def test_the_saved_adapter_is_pefts(tiny_model, tmp_path) -> None:
    model = lora_model(tiny_model, targets=["q_proj", "v_proj"])
    before = {k: v.clone() for k, v in model.state_dict().items() if "lora" in k}
    fuse_lora_forward(model)
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert len(saved) == len(before) == 4 * model.config.num_hidden_layers
