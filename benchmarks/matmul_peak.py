"""This machine's matmul peak, measured (not a datasheet figure), and MFU against it.

MFU here is the issue's measure for LoRA training: 4N FLOPs per real token (N the base model's parameters: 2N for
the forward pass, 2N for the backward pass through the frozen weights to the inputs; LoRA's own weights and the
attention scores are small beside it), over the measured peak of the dtype the matmuls run in.
"""

from __future__ import annotations

import time


def matmul_peak_gflops(dtype_name: str, size: int = 2048, seconds: float = 2.0) -> float:
    """The best GFLOP/s of size×size matmuls in dtype_name ("bfloat16", "float32") on this process's threads,
    over about `seconds` of repeats after a warm-up (the best, not the mean: the peak is what the hardware can do)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best / 1e9


def training_flops_per_token(params: int) -> float:
    """FLOPs of one real token in a LoRA step: 4N (see the module's docstring)."""
    return 4.0 * params


def mfu(tokens_per_s: float, params: int, peak_gflops: float) -> float:
    """The fraction of the peak that tokens_per_s of LoRA training on an N-parameter base uses."""
    return tokens_per_s * training_flops_per_token(params) / (peak_gflops * 1e9) if peak_gflops else 0.0
