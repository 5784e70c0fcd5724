"""Attention per document (worker.trainer.document_attention) computes what SDPA with transformers' block mask does
on packed rows — loss and gradients, with grouped-query attention — and leaves masked or cached calls to SDPA."""

from __future__ import annotations

import copy

import pytest
import torch

from worker.trainer.document_attention import (
    LONGEST,
    NAME,
    _flash_kernel,
    document_attention,
    segments,
    use_document_attention,
)
from worker.trainer.packing import PackingCollator

# Which documents go to SDPA's causal flash kernel (the rest to bmm + softmax), forced for a test.
ROUTES = {"bmm": lambda n, dtype: False, "flash": lambda n, dtype: True, "mixed": lambda n, dtype: n > 16}


def test_documents_start_where_positions_restart() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert segments(positions) == [[(0, 3), (3, 5), (5, 6), (6, 8)], [(0, 8)]]


@pytest.fixture(scope="module")
def gqa_model():
    """A tiny random Llama with 6 query heads sharing 2 KV heads (as SmolLM2's 9 share 3)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def _packed_batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    examples = [{"input_ids": torch.randint(3, 300, (n,)).tolist(), "labels": torch.randint(3, 300, (n,)).tolist()}
                for n in (17, 30, 9, 23, 12, 5)]
    batch = PackingCollator(48, 0)(examples)
    batch.pop("attention_mask")  # as loss.model_inputs does: restarting positions mark the documents
    assert len(batch["input_ids"]) > 1 and (batch["position_ids"] == 0).sum() > len(batch["input_ids"])
    return batch


def test_fp32_and_long_documents_go_to_the_flash_kernel_bf16_ones_to_bmm() -> None:
    assert _flash_kernel(100, torch.float32) and _flash_kernel(LONGEST + 1, torch.bfloat16)
    assert not _flash_kernel(100, torch.bfloat16) and not _flash_kernel(LONGEST, torch.float16)


@pytest.mark.parametrize("route", ROUTES)  # mixed: the examples of 17, 23 and 30 tokens go to the flash kernel
@pytest.mark.parametrize(("autocast", "tol"), [(False, 1e-5), (True, 2e-2)])
def test_packed_rows_give_the_masked_sdpa_loss_and_gradients(gqa_model, monkeypatch, autocast: bool, tol: float,
                                                             route: str) -> None:
    monkeypatch.setattr("worker.trainer.document_attention._flash_kernel", ROUTES[route])
    reference, documents = gqa_model, copy.deepcopy(gqa_model)
    use_document_attention(documents)
    assert documents.config._attn_implementation == NAME
    batch = _packed_batch()
    grads = []
    for model in (reference, documents):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (want_loss, want), (got_loss, got) = grads
    torch.testing.assert_close(got_loss, want_loss, rtol=tol / 10, atol=0)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=tol, atol=tol * want[name].abs().max().item(),
                                   msg=name)


@pytest.mark.parametrize("route", ["bmm", "flash"])
def test_no_token_attends_across_documents(monkeypatch, route: str) -> None:
    monkeypatch.setattr("worker.trainer.document_attention._flash_kernel", ROUTES[route])
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 4, 10, 8, requires_grad=True) for _ in range(3))
    out = document_attention(q, k[:, :2], v[:, :2], 8 ** -0.5, [[(0, 4), (4, 10)]])
    alone = document_attention(q[:, :, 4:], k[:, :2, 4:], v[:, :2, 4:], 8 ** -0.5, [[(0, 6)]])
    torch.testing.assert_close(out[:, 4:], alone)
    kv = k[:, :2, 4:].repeat_interleave(2, 1), v[:, :2, 4:].repeat_interleave(2, 1)  # what SDPA computes
    want = torch.nn.functional.scaled_dot_product_attention(q[:, :, 4:], *kv, is_causal=True, scale=8 ** -0.5)
    torch.testing.assert_close(out[:, 4:], want.transpose(1, 2))
    out[:, 4:].sum().backward()
    assert k.grad[:, :, :4].abs().sum() == 0 and v.grad[:, :, :4].abs().sum() == 0


def test_generation_and_padded_batches_keep_sdpa(gqa_model) -> None:
    reference, documents = gqa_model, copy.deepcopy(gqa_model)
    use_document_attention(documents)
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding: a mask, so SDPA with it
    torch.testing.assert_close(documents(input_ids=ids, attention_mask=mask).logits,
                               reference(input_ids=ids, attention_mask=mask).logits)
    with torch.no_grad():
        made = [m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
                for m in (reference, documents)]
    assert torch.equal(*made)
