"""Stacked frozen projections (worker.trainer.stacked_projections): the same outputs and gradients as the layers
alone, with and without the fused LoRA forward and under bf16 autocast; one matmul per shared input; no weight
copied; and a layer whose weight was replaced, or that gets another input, computes alone."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.support.peft_models import lora_model, loss_and_grads
from worker.trainer.lora_fusion import fuse_lora_forward
from worker.trainer.stacked_projections import stack_frozen_projections

ATTENTION, MLP = ("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")


def _base(layer) -> torch.nn.Linear:
    return getattr(layer, "base_layer", layer)


@pytest.mark.parametrize("fused_lora", [False, True])
@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear"])
@pytest.mark.parametrize(("autocast", "tol"), [(False, 1e-5), (True, 2e-2)])
def test_same_loss_and_gradients_as_the_layers_alone(tiny_model, targets, fused_lora: bool, autocast: bool,
                                                     tol: float) -> None:
    reference = lora_model(tiny_model, targets=targets)
    stacked = copy.deepcopy(reference)
    if fused_lora:  # after the copy: the fused forwards are closures over their own model's layers
        fuse_lora_forward(reference)
        fuse_lora_forward(stacked)
    assert stack_frozen_projections(stacked) == 5 * stacked.config.num_hidden_layers
    ids = torch.randint(0, stacked.config.vocab_size, (2, 24))
    want_loss, want = loss_and_grads(reference, ids, autocast)
    got_loss, got = loss_and_grads(stacked, ids, autocast)
    torch.testing.assert_close(got_loss, want_loss, rtol=tol / 10, atol=0)
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol * want[name].abs().max().item(),
                                   msg=name)


def test_siblings_share_one_product_and_one_stacked_weight(tiny_model) -> None:
    model = lora_model(tiny_model, targets=["q_proj", "v_proj"])  # k, gate and up stay plain linears
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stack_frozen_projections(model)
    block = model.base_model.model.model.layers[0]
    outputs: dict[str, torch.Tensor] = {}
    for names, parent in ((ATTENTION, block.self_attn), (MLP, block.mlp)):
        storages = {_base(getattr(parent, n)).weight.untyped_storage().data_ptr() for n in names}
        assert len(storages) == 1, "the siblings' weights are views of one stacked tensor, not copies"
        for name in names:
            _base(getattr(parent, name)).register_forward_hook(
                lambda m, i, o, name=name: outputs.__setitem__(name, o))
    model(input_ids=torch.randint(0, model.config.vocab_size, (1, 9)))
    for names in (ATTENTION, MLP):
        assert len({outputs[n].untyped_storage().data_ptr() for n in names}) == 1, "one matmul per shared input"
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_a_replaced_weight_or_another_input_computes_alone(tiny_model) -> None:
    model = lora_model(tiny_model, targets=["q_proj", "v_proj"])
    stack_frozen_projections(model)
    mlp = model.base_model.model.model.layers[0].mlp
    x, other = torch.randn(1, 5, mlp.gate_proj.in_features), torch.randn(1, 5, mlp.up_proj.in_features)
    torch.testing.assert_close(mlp.gate_proj(x), x @ mlp.gate_proj.weight.T)
    torch.testing.assert_close(mlp.up_proj(other), other @ mlp.up_proj.weight.T)  # not gate's input
    mlp.up_proj.weight.data = torch.randn_like(mlp.up_proj.weight)  # replaced, not written in place
    torch.testing.assert_close(mlp.gate_proj(x), x @ mlp.gate_proj.weight.T)
    torch.testing.assert_close(mlp.up_proj(x), x @ mlp.up_proj.weight.T)


def test_trainable_or_non_linear_siblings_are_not_stacked(tiny_model) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)  # every weight trainable: nothing frozen to stack
    assert stack_frozen_projections(model) == 0
    model.requires_grad_(False)
    model.model.layers[0].mlp.up_proj = torch.nn.Identity()  # a sibling that is no linear: its group stays apart
    assert stack_frozen_projections(model) == 5 * model.config.num_hidden_layers - 2
