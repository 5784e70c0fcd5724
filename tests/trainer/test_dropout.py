"""LeanDropout is torch's dropout (same draws, outputs and gradients) with a boolean mask saved for backward."""

from __future__ import annotations

import torch

from worker.trainer.dropout import LeanDropout, use_lean_dropout


def test_same_outputs_and_gradients_as_torch_dropout() -> None:
    x = torch.randn(64, 48, requires_grad=True)
    results = []
    for module in (torch.nn.Dropout(0.3), LeanDropout(0.3)):
        torch.manual_seed(7)
        out = module(x)
        (grad,) = torch.autograd.grad((out * torch.arange(48.0)).sum(), x)
        results.append((out, grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)


def test_saves_a_boolean_mask() -> None:
    saved: list[torch.Tensor] = []
    x = torch.randn(8, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        LeanDropout(0.5)(x)
    assert [t.dtype for t in saved] == [torch.bool]


def test_identity_in_eval_and_swapped_into_lora_layers(tiny_model) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear"))
    assert use_lean_dropout(model) == 7 * model.config.num_hidden_layers
    x = torch.randn(3, 5)
    assert LeanDropout(0.1).eval()(x) is x
