"""Packed batches give the same loss and gradients as padded ones: no attention crosses an example boundary."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.trainer.data import IGNORE_INDEX, PaddingCollator
from worker.trainer.loss import model_inputs
from worker.trainer.model import attention_implementation, varlen_attention
from worker.trainer.packing import PackingCollator, first_fit_decreasing


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
    logits = model(**model_inputs(batch)).logits.float()
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


TEXTS = ["the cat is on the mat and the dog is in the house", "hello",
         "what is the capital of france ? paris is the capital", "one two three four five six seven"]


def _model(tiny_model: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa", dtype=torch.float32)


def test_packed_and_padded_losses_and_gradients_match(tiny_model: Path) -> None:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = _model(tiny_model)
    examples = _examples(tokenizer, TEXTS)
    padded = _loss_sum(model, PaddingCollator(tokenizer.pad_token_id)(examples))
    grads_padded = torch.autograd.grad(padded, model.model.embed_tokens.weight)[0]
    # A cap of 20 tokens: several rows, some holding two examples, one with a padding segment.
    batch = PackingCollator(20, tokenizer.pad_token_id)(examples)
    assert 1 < batch["input_ids"].shape[0] < len(examples) and batch["input_ids"].shape[1] <= 20
    packed = _loss_sum(model, batch)
    grads_packed = torch.autograd.grad(packed, model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=0)
    torch.testing.assert_close(grads_packed, grads_padded, rtol=1e-4, atol=1e-6)


def test_a_flattened_batch_matches_padded_ones(tiny_model: Path) -> None:
    """The layout FlashAttention-2's varlen kernel gets (the whole batch in one row, spans from the restarting
    position_ids), checked here under sdpa, which reads one packed row the same way (FA2 itself needs a GPU)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = _model(tiny_model)
    examples = _examples(tokenizer, TEXTS)
    padded = _loss_sum(model, PaddingCollator(tokenizer.pad_token_id)(examples))
    grads_padded = torch.autograd.grad(padded, model.model.embed_tokens.weight)[0]
    batch = PackingCollator(20, tokenizer.pad_token_id, flatten=True)(examples)
    assert batch["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))  # no cap, no padding
    assert batch["attention_mask"].all()
    flat = _loss_sum(model, batch)
    grads_flat = torch.autograd.grad(flat, model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(flat, padded, rtol=1e-5, atol=0)
    torch.testing.assert_close(grads_flat, grads_padded, rtol=1e-4, atol=1e-6)


def test_flash_attention_is_chosen_only_where_it_can_run(tiny_model: Path) -> None:
    assert attention_implementation("cpu") is None  # and on a GPU only with flash_attn installed, in bf16/fp16
    assert not varlen_attention(_model(tiny_model))


def test_packing_without_boundary_masks_would_differ(tiny_model: Path) -> None:
    """Guards the test above: the same packed row as one plain sequence gives a different loss."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = _model(tiny_model)
    examples = _examples(tokenizer, ["the cat is on the mat", "one two three four five six seven"])
    packed = PackingCollator(64)(examples)
    plain = {"input_ids": packed["input_ids"], "labels": packed["labels"], "use_cache": False}
    assert abs(_loss_sum(model, packed) - _loss_sum(model, plain)) > 1e-3


def test_rows_are_capped_and_padding_restarts_its_own_segment() -> None:
    batch = PackingCollator(5, pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]},
                                                {"input_ids": [8, 9], "labels": [8, 9]},
                                                {"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}])
    # Longest first: [1..4] alone (room for 1), [5, 6, 7] + [8, 9] fill the second row.
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3, 4, IGNORE_INDEX], [IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]  # counts real tokens only
    assert batch["use_cache"] is False
    assert "attention_mask" not in model_inputs(batch)  # it would switch off packed-sequence masking


def test_first_fit_decreasing_keeps_every_item_once_within_capacity() -> None:
    lengths = [7, 3, 9, 1, 4, 4, 2, 8]
    bins = first_fit_decreasing(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 4  # 38 tokens need at least 4 rows of 10


def test_cheapest_rows_trade_padding_against_row_width() -> None:
    from worker.trainer.packing import cheapest_rows

    lengths = [300, 200, 150, 100]
    # A 512-token capacity gives rows [300, 200] and [150, 100]: 1,000 positions for 750 tokens.
    assert max(sum(lengths[i] for i in b) for b in first_fit_decreasing(lengths, 512)) == 500
    bins = cheapest_rows(lengths, 512, break_even=2600)
    widths = [sum(lengths[i] for i in b) for b in bins]
    assert sorted(i for b in bins for i in b) == [0, 1, 2, 3]
    assert len(bins) * max(widths) < 1000 and max(widths) <= 512
    # When attention costs nothing extra, one row as long as allowed is cheapest; when it dominates, rows no
    # wider than the longest example.
    assert len(cheapest_rows(lengths, 750, break_even=1e12)) == 1
    assert cheapest_rows(lengths, 750, break_even=1) == [[0], [1, 3], [2]]
    # An example at the cap keeps the plain first-fit bins.
    assert cheapest_rows([512, 10], 512, break_even=2600) == first_fit_decreasing([512, 10], 512)
