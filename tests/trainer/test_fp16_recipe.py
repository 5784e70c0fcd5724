"""GPUs without bf16 (T4, V100) train under fp16 autocast with a gradient scaler, the usual recipe there (issue 17,
item 5): the Trainer is asked for it, QLoRA computes in fp16, and the chunked loss keeps the hidden states'
gradient in fp32 until the loss scale is applied. (No GPU here: accelerate runs fp16 only on one, so the Trainer's
arguments and the loss's numbers are what is checked; the CPU runs fp16 matmuls, slowly.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker.planning.spec import RunSpec
from worker.trainer import model as model_module
from worker.trainer.loop import training_arguments
from worker.trainer.loss import linear_cross_entropy


@pytest.mark.parametrize(("device", "bf16", "expected"), [
    ("cuda", False, "fp16"), ("cuda", True, "bf16"), ("cpu", True, "bf16"), ("cpu", False, "fp32")])
def test_the_precision_of_each_device(monkeypatch, device: str, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(model_module, "supports_bf16", lambda _device: bf16)
    assert model_module.precision(device) == expected


def test_a_gpu_without_bf16_asks_the_trainer_for_fp16_autocast(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_module, "supports_bf16", lambda _device: False)  # a T4
    spec = RunSpec(method="qlora", model={"base_model": "m"}, data={"path": "-"})
    args = training_arguments(spec, tmp_path, "cuda", has_eval=False)
    assert args.fp16 and not args.bf16
    assert model_module.compute_dtype(spec, "cuda") == torch.float16
    on_cpu = training_arguments(spec, tmp_path, "cpu", has_eval=False)
    assert not on_cpu.fp16 and not on_cpu.bf16  # a CPU without bf16 stays fp32


def test_the_chunked_loss_in_fp16_under_a_loss_scale_matches_fp32() -> None:
    generator = torch.Generator().manual_seed(0)
    tokens, hidden_size, vocab = 96, 64, 500
    hidden32 = torch.randn(tokens, hidden_size, generator=generator)
    weight32 = torch.randn(vocab, hidden_size, generator=generator) * 0.05
    targets = torch.randint(0, vocab, (tokens,), generator=generator)
    targets[::7] = -100  # ignored positions

    reference = hidden32.clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(reference @ weight32.T, targets, reduction="sum")
    expected.backward()

    hidden16 = hidden32.half().requires_grad_()
    loss = linear_cross_entropy(hidden16, weight32.half(), targets, torch.float16)
    scale = 2.0**16  # GradScaler's starting scale
    (loss / (targets != -100).sum() * scale).backward()  # a mean loss, scaled, as fp16 training does
    assert hidden16.grad.dtype == torch.float16 and torch.isfinite(hidden16.grad).all()
    got = hidden16.grad.float() / scale * (targets != -100).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=2e-3)
    assert torch.allclose(got, reference.grad, rtol=2e-2, atol=2e-3), (got - reference.grad).abs().max()


def test_a_loss_scale_past_fp16s_range_is_applied_in_fp32() -> None:
    # GradScaler starts at 2**16, past fp16's largest value (65504): applied to an fp16 gradient buffer it gave
    # inf and NaN for every row; the fp32 one scales first and rounds once, finite where the result fits.
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 64, generator=generator).half().requires_grad_()
    weight = (torch.randn(500, 64, generator=generator) * 0.05).half()
    targets = torch.tensor([3, -100, -100, -100])  # one labelled token: its summed loss is scaled as is
    (linear_cross_entropy(hidden, weight, targets, torch.float16) * 2.0**16).backward()
    assert torch.isfinite(hidden.grad).all() and hidden.grad[0].abs().max() > 1000
    assert not hidden.grad[1:].any()  # ignored rows get no gradient
