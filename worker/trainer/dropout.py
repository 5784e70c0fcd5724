"""LoRA dropout for CPU training: a cheap random mask, and a 1-byte mask saved for backward.

PyTorch's CPU dropout is `input * (bernoulli / (1 - p))`: the Bernoulli draw runs torch's Mersenne Twister
element by element (a fifth of a LoRA step on SmolLM2, measured with torch.profiler), and autograd saves
the float noise tensor, seven fp32 vectors of the layer's width per token and layer with dropout on every
LoRA-wrapped linear of a Llama block. Here the mask comes from 16 random bits per element, drawn in bulk
as the raw 64-bit outputs of numpy's PCG64 (four lanes each) seeded with one draw from torch's generator,
so torch.manual_seed and the RNG state a checkpoint restores still decide every mask; only a boolean mask
is saved. The masks are not torch's (another generator); the distribution is the same up to p rounded to
a multiple of 1/65,536. On CUDA torch's own fused dropout is already fast and saves a byte mask: used as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_LEVELS = 1 << 16  # random bits per element: p is rounded to a multiple of 1 / 65,536


def _drop_below(p: float) -> int:
    """The 16-bit draws under this value drop their element: p rounded to the mask's resolution."""
    return round(p * _LEVELS)


def keep_probability(p: float) -> float:
    """The keep probability the mask really has: 1 - p rounded to the mask's resolution."""
    return 1 - _drop_below(p) / _LEVELS


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A boolean CPU tensor, True with probability keep_probability(p) per element, decided by torch's RNG."""
    seed = int(torch.randint(0, 2**62, ()).item())  # advances torch's CPU generator like any other draw
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.random.PCG64(seed).random_raw((count + 3) // 4)  # 64 uniform bits each: four 16-bit lanes
    return torch.from_numpy(raw.view(np.uint16)[:count] >= _drop_below(p)).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale, saving the boolean mask (not a float tensor) for backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        mask = keep_mask(x.shape, p)
        ctx.save_for_backward(mask)
        ctx.scale = 1 / keep_probability(p)
        return x.mul(ctx.scale).mul_(mask)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad.mul(ctx.scale).mul_(mask), None


class LeanDropout(torch.nn.Dropout):
    """nn.Dropout with a faster mask on the CPU and an eighth of the saved memory for fp32 inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
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
