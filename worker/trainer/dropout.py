"""LoRA dropout that keeps a 1-byte mask for backward instead of a full-width float copy of it.

PyTorch's CPU dropout is `input * (bernoulli / (1 - p))` and autograd saves that float noise tensor: with
dropout on every LoRA-wrapped linear of a Llama block that is seven fp32 vectors of the layer's width per
token and layer, a third of what training saves for backward. This module draws the same noise from the
same generator (so the outputs are bit-identical) and saves only which elements were kept.
"""

from __future__ import annotations

from typing import Any

import torch


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale, saving the boolean mask (not a float tensor) for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        noise = torch.empty_like(x).bernoulli_(1 - p)  # exactly what torch's dropout draws
        ctx.save_for_backward(noise.bool())
        ctx.p = p
        return x * noise.div_(1 - p)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype).div_(1 - ctx.p), None


class LeanDropout(torch.nn.Dropout):
    """nn.Dropout with the same outputs and gradients, and an eighth of the saved memory for fp32 inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        return _MaskedScale.apply(x, self.p)


def use_lean_dropout(model: torch.nn.Module) -> int:
    """Swap every nn.Dropout inside PEFT's lora_dropout dicts for LeanDropout; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is torch.nn.Dropout:
                dropouts[name] = LeanDropout(dropout.p)
                swapped += 1
    return swapped
