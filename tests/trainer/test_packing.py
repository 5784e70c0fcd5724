"""Packed batches give the same loss and gradients as padded ones: no attention crosses an example boundary."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.trainer.data import IGNORE_INDEX, PaddingCollator
from worker.trainer.packing import PackingCollator


def _examples(tokenizer, texts: list[str]) -> list[dict[str, list[int]]]:
    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        half = len(ids) // 2  # a prompt without loss, then a labelled completion
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * half + ids[half:]})
    return out


def _loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of per-token losses, whatever the layout of the batch."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def test_packed_and_padded_losses_and_gradients_match(tiny_model: Path) -> None:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa", dtype=torch.float32)
    examples = _examples(tokenizer, ["the cat is on the mat and the dog is in the house",
                                     "hello", "what is the capital of france ? paris is the capital",
                                     "one two three four five six seven"])
    padded = _loss_sum(model, PaddingCollator(tokenizer.pad_token_id)(examples))
    grads_padded = torch.autograd.grad(padded, model.model.embed_tokens.weight)[0]
    packed = _loss_sum(model, PackingCollator()(examples))
    grads_packed = torch.autograd.grad(packed, model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=0)
    torch.testing.assert_close(grads_packed, grads_padded, rtol=1e-4, atol=1e-6)


def test_packing_without_boundary_masks_would_differ(tiny_model: Path) -> None:
    """Guards the test above: the same packed row as one plain sequence gives a different loss."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa", dtype=torch.float32)
    examples = _examples(tokenizer, ["the cat is on the mat", "one two three four five six seven"])
    packed = PackingCollator()(examples)
    plain = {"input_ids": packed["input_ids"], "labels": packed["labels"], "use_cache": False}
    assert abs(_loss_sum(model, packed) - _loss_sum(model, plain)) > 1e-3


def test_packed_row_masks_each_first_label_and_restarts_positions() -> None:
    batch = PackingCollator()([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch and batch["use_cache"] is False
