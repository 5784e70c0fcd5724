"""The speed levers keep the numbers: the labelled-logits loss, real-token counts with packing, bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import worker.trainer.loop as loop
from worker.trainer.data import IGNORE_INDEX, PaddingCollator
from worker.trainer.events import ListSink
from worker.trainer.loss import causal_lm_loss
from worker.trainer.model import supports_bf16
from worker.trainer.packing import PackingCollator


def _batch() -> list[dict[str, list[int]]]:
    return [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [IGNORE_INDEX] * 3 + [8, 9, 10]},
            {"input_ids": [11, 12, 13], "labels": [IGNORE_INDEX, 12, 13]}]


@pytest.mark.parametrize("num_items", [None, 7])
def test_labelled_logits_loss_equals_the_models_own(tiny_model: Path, num_items: int | None) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = PaddingCollator(0)(_batch())
    kwargs = {"num_items_in_batch": num_items} if num_items else {}
    expected = model(**batch, **kwargs).loss
    loss, outputs = causal_lm_loss(model, batch, num_items)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert outputs.logits.shape[1] == 5  # of 6: the last position predicts nothing in either row


def test_packed_training_counts_real_tokens_and_matches_padded_losses(make_spec, tmp_path) -> None:
    losses, tokens = {}, {}
    for packing in (False, True):
        sink = ListSink()
        spec = make_spec(data={"packing": packing}, training={"max_steps": 4})
        result = loop.train(spec, tmp_path / str(packing), sink)
        losses[packing] = [m["loss"] for m in sink.metrics() if "loss" in m]
        tokens[packing] = result.tokens_seen
    assert tokens[True] == tokens[False]
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)


def test_collator_follows_the_spec(make_spec) -> None:
    tokenizer = type("T", (), {"pad_token_id": 0})()
    assert isinstance(loop.collator(make_spec(data={"packing": True}), None), PackingCollator)
    assert isinstance(loop.collator(make_spec(), tokenizer), PaddingCollator)  # packing is opt-in for now


def test_bf16_autocast_where_the_cpu_supports_it(make_spec, tmp_path) -> None:
    args = loop.training_arguments(make_spec(), tmp_path, "cpu", has_eval=False)
    assert args.bf16 == supports_bf16("cpu")
