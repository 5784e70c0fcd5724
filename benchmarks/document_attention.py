"""Attention over one packed row, forward and backward, three ways (worker/trainer/document_attention.py chooses):

  masked   SDPA over the whole row with a block-diagonal causal mask (what transformers does for packed rows)
  bmm      per document, bmm + softmax with the probabilities recomputed in backward (_CausalAttention)
  flash    per document, SDPA's causal flash kernel without a mask

Grouped-query shapes of SmolLM2 (9 query heads, 3 KV heads, head size 64), on the dtypes this CPU multiplies
natively (fp32 always; bf16 where it has AVX512-BF16 or AMX). Ratios are against `masked`, measured in this process.
Run with nothing else on the cores:  .venv/bin/python benchmarks/document_attention.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.planning.device_profiles import cpu_has_native_bf16  # noqa: E402
from worker.trainer.document_attention import _CausalAttention  # noqa: E402

HEADS, KV_HEADS, DIM = 9, 3, 64
ROWS = {"3 documents (300, 150, 62)": [300, 150, 62], "one long document (500, 12)": [500, 12],
        "4 short documents (120, 90, 200, 80)": [120, 90, 200, 80]}
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[int]], torch.Tensor]


def masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    allowed = torch.block_diag(*[torch.ones(n, n, dtype=torch.bool).tril() for n in lengths])
    return torch.nn.functional.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=allowed,
                                                            enable_gqa=True)[0]


def bmm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    out, start = [], 0
    for n in lengths:
        stacked = q[:, start:start + n].reshape(KV_HEADS, HEADS // KV_HEADS * n, DIM)
        out.append(_CausalAttention.apply(stacked, k[:, start:start + n], v[:, start:start + n], DIM ** -0.5)
                   .view(HEADS, n, DIM))
        start += n
    return torch.cat(out, 1)


def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    out, start = [], 0
    for n in lengths:
        part = slice(start, start + n)
        out.append(torch.nn.functional.scaled_dot_product_attention(
            q[None, :, part], k[None, :, part], v[None, :, part], is_causal=True, enable_gqa=True)[0])
        start += n
    return torch.cat(out, 1)


def milliseconds(attend: Attention, lengths: list[int], dtype: torch.dtype, repeats: int = 20) -> float:
    """The best of `repeats` forward + backward passes (after a warm-up)."""
    length = sum(lengths)
    q = torch.randn(HEADS, length, DIM, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(KV_HEADS, length, DIM, dtype=dtype, requires_grad=True) for _ in range(2))
    grad = torch.randn(HEADS, length, DIM, dtype=dtype)
    for _ in range(3):
        attend(q, k, v, lengths).backward(grad)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        attend(q, k, v, lengths).backward(grad)
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def main() -> None:
    torch.manual_seed(0)
    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_has_native_bf16() else [])
    for dtype in dtypes:
        for row, lengths in ROWS.items():
            times = {name: milliseconds(fn, lengths, dtype) for name, fn in
                     (("masked", masked), ("bmm", bmm), ("flash", flash))}
            print(f"{str(dtype)[6:]:>8}  {row:<38}" + "  ".join(
                f"{name} {ms:6.1f} ms ({times['masked'] / ms:.2f}x)" for name, ms in times.items()))


if __name__ == "__main__":
    main()
