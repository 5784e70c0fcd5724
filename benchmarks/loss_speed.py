"""The causal-LM loss through the output head: the studio's chunked loss against full logits, forward + backward.

Run: .venv/bin/python benchmarks/loss_speed.py [--tokens 1700] [--repeats 7]
SmolLM2's head (49,152 x 576, frozen, tied) under bf16 autocast where the CPU has native bf16, else fp32.
"full logits": the head's matmul and F.cross_entropy on the whole [tokens x vocabulary] fp32 logits, as
transformers' ForCausalLMLoss does. The chunked loss runs at several chunk sizes; interleaved, medians.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import worker.trainer.loss as loss_module  # noqa: E402
from worker.trainer.model import supports_bf16  # noqa: E402

VOCAB, HIDDEN = 49_152, 576


def full_logits(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    logits = (hidden.to(dtype) @ weight.to(dtype).T).float()
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


def chunked(elements: int) -> Callable[..., torch.Tensor]:
    def run(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        loss_module.CHUNK_ELEMENTS = elements
        return loss_module.linear_cross_entropy(hidden, weight, targets, dtype)
    return run


def seconds(fn: Callable[..., torch.Tensor], hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
            dtype: torch.dtype) -> float:
    """Forward and backward of one loss, seconds."""
    started = time.perf_counter()
    fn(hidden, weight, targets, dtype).backward()
    hidden.grad = None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1700, help="labelled tokens per forward pass")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if supports_bf16("cpu") else torch.float32
    hidden = torch.randn(args.tokens, HIDDEN, requires_grad=True)
    weight = torch.randn(VOCAB, HIDDEN) * 0.05
    targets = torch.randint(0, VOCAB, (args.tokens,))
    default = loss_module.CHUNK_ELEMENTS
    variants = {"full logits": full_logits, **{f"chunked 2^{e}" + (" (default)" if 2**e == default else ""):
                                                 chunked(2**e) for e in (25, 23, 22)}}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(seconds(fn, hidden, weight, targets, dtype))
    loss_module.CHUNK_ELEMENTS = default
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["full logits"]
    for name, t in times.items():
        print(f"{name:<22}{med[name] * 1e3:8.1f} ms (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})"
              f"   full/this {base / med[name]:.2f}x")
    print(f"({args.tokens} tokens, {dtype}, {torch.get_num_threads()} threads; peak RSS of the process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, set by the full logits)")


if __name__ == "__main__":
    main()
