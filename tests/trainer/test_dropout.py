"""LeanDropout: a dropout with the right statistics, decided by torch's seed, saving a boolean mask for backward."""

from __future__ import annotations

import pytest
import torch

from worker.trainer.dropout import LeanDropout, keep_probability, use_lean_dropout


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_keeps_the_right_share_and_preserves_the_mean(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    out = LeanDropout(p)(x)
    kept = out.ne(0)
    assert keep_probability(p) == pytest.approx(1 - p, abs=1 / 65536)
    # 10^6 Bernoulli draws: the share kept is within 5 standard deviations of 1 - p.
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=5 * (p * (1 - p) / 1e6) ** 0.5)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / keep_probability(p)))
    assert out.mean().item() == pytest.approx(1.0, abs=0.005)


def test_the_gradient_is_the_mask_that_was_applied() -> None:
    x = torch.randn(64, 48, requires_grad=True)
    out = LeanDropout(0.3)(x)
    weights = torch.arange(48.0)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    scale = 1 / keep_probability(0.3)
    torch.testing.assert_close(grad, out.ne(0) * scale * weights)
    torch.testing.assert_close(out, x.detach() * out.ne(0) * scale)


def test_torch_seed_decides_the_mask() -> None:
    x = torch.randn(32, 32)
    torch.manual_seed(7)
    first = LeanDropout(0.5)(x)
    torch.manual_seed(7)
    again = LeanDropout(0.5)(x)
    later = LeanDropout(0.5)(x)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert not torch.equal(later, first)  # the generator advanced


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
