"""Attention for packed rows on the CPU, one document at a time: no O(L²) block mask, no work across documents.

A packed row holds several examples whose position_ids restart at 0. With SDPA, transformers turns that into a
block-diagonal causal mask and PyTorch's CPU flash kernel then computes every block of the row, masked or not;
with a mask it also copies K and V once per query head (repeat_kv). Measured on a 2-core AVX512-BF16 CPU
(benchmarks: a 512-token row of three examples, 9 query and 3 KV heads, bf16, forward and backward): 24 ms for the
masked kernel, 19 ms for that kernel called per document, 7 ms for plain matmuls per document.

So in bf16 each document's causal attention is computed here with bmm and softmax (transformers' eager
attention), the query heads of one KV head stacked so grouped-query attention needs no copies of K and V. Like
flash attention it keeps no n × n probabilities for backward: they are recomputed there from Q and K
(_CausalAttention), so memory stays near that of the masked kernel. In fp32 (a CPU without native bf16) the
balance turns: on an AVX2-only EPYC, SDPA's causal flash kernel called per document (no mask; it skips the masked
half of the scores) took 14 ms for such a row where bmm and softmax took 25 (the masked kernel 26), 22 against 41
for a 500-token example, 12 against 16 for four short ones (benchmarks/document_attention.py, best of 20). So fp32
documents, and in any dtype those longer than LONGEST tokens (whose memory then grows linearly with them), go to
that kernel one by one: still no mask, so no work across examples.

The attention is registered with transformers as NAME and used only for what it was made for: a forward without a
KV cache or attention mask whose keys are its queries (packed or plain training rows, the trainer's evaluation).
Everything else — generation with a cache, padded batches with a mask — goes to transformers' SDPA as before.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

NAME = "studio_documents"
# Longer documents go to SDPA's causal flash kernel (without a mask): its memory is linear in their length, where
# the n × n scores here would take 3 × 4096² × 2 bytes = 100 MB per layer for one 4,096-token example.
LONGEST = 1024


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each document: a document starts wherever its position restarts at 0."""
    rows = []
    for positions in position_ids.tolist():
        starts = [i for i, p in enumerate(positions) if p == 0 or i == 0]
        rows.append(list(zip(starts, [*starts[1:], len(positions)], strict=True)))
    return rows


@functools.lru_cache(maxsize=16)  # at most 16 × 3 × 1024² bf16 values (100 MB) for SmolLM2's 3 groups
def _causal_bias(length: int, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """-inf above the diagonal of each of the `groups` stacked query blocks of one document ([groups·n, n]).
    Cached: one step meets each document length in every layer, forward and backward."""
    bias = torch.full((length, length), float("-inf"), dtype=dtype).triu_(1)
    return bias.repeat(groups, 1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(Q·Kᵀ·scale + causal) · V. The softmax of bf16 scores accumulates in float32 (PyTorch's CPU kernel)."""
    groups = q.shape[1] // k.shape[1]
    scores = torch.baddbmm(_causal_bias(k.shape[1], groups, q.dtype), q, k.transpose(1, 2), alpha=scale)
    return torch.bmm(torch.softmax(scores, dim=-1), v)


class _CausalAttention(torch.autograd.Function):
    """_attend for one document, keeping only Q, K and V for backward: the n × n probabilities are recomputed there
    (as flash attention does), and differentiated by PyTorch's own kernels.

    q: [kv_heads, groups·n, d] (the query heads of each KV head stacked); k, v: [kv_heads, n, d].
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,  # type: ignore[override]
                scale: float) -> torch.Tensor:
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale
        return _attend(q, k, v, scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            out = _attend(*inputs, ctx.scale)
        grad_q, grad_k, grad_v = torch.autograd.grad(out, inputs, grad)
        return grad_q, grad_k, grad_v, None


def _flash_kernel(length: int, dtype: torch.dtype) -> bool:
    """Whether a document goes to SDPA's causal flash kernel rather than bmm + softmax (see the module's docstring):
    in fp32, where that kernel is the faster, and for documents past LONGEST tokens, whose n × n scores would be
    too large to keep."""
    return dtype == torch.float32 or length > LONGEST


def document_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
                       rows: list[list[tuple[int, int]]]) -> torch.Tensor:
    """Causal attention within each document of each row. query [b, h, L, d], key/value [b, kv, L, d] →
    [b, L, h, d], the layout transformers' attention functions return."""
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]
    groups = heads // kv_heads
    out_rows = []
    for b, documents in enumerate(rows):
        pieces = []
        for start, end in documents:
            n = end - start
            k, v = key[b, :, start:end], value[b, :, start:end]
            if _flash_kernel(n, query.dtype):
                out = torch.nn.functional.scaled_dot_product_attention(
                    query[b:b + 1, :, start:end], k[None], v[None], is_causal=True, scale=scale, enable_gqa=True)[0]
            else:
                q = query[b, :, start:end].reshape(kv_heads, groups * n, dim)
                out = _CausalAttention.apply(q, k, v, scale)
            pieces.append(out.view(heads, n, dim).transpose(0, 1))
        out_rows.append(torch.cat(pieces) if len(pieces) > 1 else pieces[0])
    return torch.stack(out_rows)


class _Documents:
    """The documents of the position_ids last seen: every layer of one forward gets the same tensor."""

    position_ids: torch.Tensor | None = None
    rows: list[list[tuple[int, int]]] = []

    @classmethod
    def of(cls, position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
        if position_ids is not cls.position_ids:
            cls.position_ids, cls.rows = position_ids, segments(position_ids)
        return cls.rows


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: per document where it applies, else SDPA as transformers does it."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if (attention_mask is not None or position_ids is None or dropout or kwargs.get("output_attentions")
            or query.shape[2] != key.shape[2] or position_ids.shape[-1] != query.shape[2]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kind = query.device.type
    if torch.is_autocast_enabled(kind):  # RoPE may hand q and k over in float32
        dtype = torch.get_autocast_dtype(kind)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    rows = _Documents.of(position_ids)
    if len(rows) != query.shape[0]:  # one row of positions for the whole batch
        rows = rows * query.shape[0]
    return document_attention(query, key, value, scale, rows), None


def _mask(**kwargs: Any) -> torch.Tensor | None:
    """No mask where attention_forward works per document (no attention mask, no cache offset); else SDPA's."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None and kwargs.get("q_offset", 0) == 0 \
            and kwargs.get("q_length") == kwargs.get("kv_length"):
        return None
    return sdpa_mask(**kwargs)


def use_document_attention(model: Any) -> None:
    """Register NAME with transformers (once) and switch the model's attention to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _mask)
    model.set_attn_implementation(NAME)
