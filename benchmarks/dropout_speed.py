"""LoRA dropout on the CPU: the studio's LeanDropout against torch's nn.Dropout, forward + backward.

Run: .venv/bin/python benchmarks/dropout_speed.py [--tokens 1200] [--repeats 15]
One Llama block's seven LoRA dropouts (SmolLM2 widths: six of 576, one of 1536), interleaved, medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.trainer.dropout import LeanDropout  # noqa: E402


def block_seconds(dropout: torch.nn.Module, inputs: list[torch.Tensor]) -> float:
    """Seconds for the forward and backward of one block's dropouts."""
    started = time.perf_counter()
    for x in inputs:
        out = dropout(x)
        out.backward(torch.ones_like(out))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1200, help="packed tokens per forward pass")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--p", type=float, default=0.05)
    args = parser.parse_args()
    inputs = [torch.randn(args.tokens, width, requires_grad=True) for width in (576,) * 6 + (1536,)]
    modules = {"torch nn.Dropout": torch.nn.Dropout(args.p), "LeanDropout": LeanDropout(args.p)}
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.repeats):
        for name, module in modules.items():
            times[name].append(block_seconds(module, inputs))
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:<18}{med[name] * 1e3:8.1f} ms per block (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})")
    print(f"torch / LeanDropout time: {med['torch nn.Dropout'] / med['LeanDropout']:.2f}x "
          f"({args.tokens} tokens, p={args.p}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
