"""The speed levers keep the numbers: the chunked loss, real-token counts with packing, bf16 autocast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import worker.trainer.loop as loop
import worker.trainer.loss as loss_module
from worker.trainer.data import IGNORE_INDEX, PaddingCollator
from worker.trainer.loss import causal_lm_loss, labelled_logits_loss, linear_cross_entropy
from worker.trainer.model import supports_bf16
from worker.trainer.packing import PackingCollator
from worker.trainer.sinks import ListSink


def _batch() -> list[dict[str, list[int]]]:
    return [{"input_ids": [5, 6, 7, 8, 9, 10], "labels": [IGNORE_INDEX] * 3 + [8, 9, 10]},
            {"input_ids": [11, 12, 13], "labels": [IGNORE_INDEX, 12, 13]}]


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("num_items", [None, 7])
@pytest.mark.parametrize("loss_fn", [causal_lm_loss, labelled_logits_loss])
def test_loss_and_gradients_equal_the_models_own(tiny_model: Path, num_items: int | None, loss_fn,
                                                 monkeypatch) -> None:
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 3 * 64)  # 2 tokens a chunk on the tiny model's vocabulary
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = PaddingCollator(0)(_batch())
    kwargs = {"num_items_in_batch": num_items} if num_items else {}
    expected = model(**batch, **kwargs).loss
    expected.backward()
    want = _grads(model)
    model.zero_grad()
    loss, _ = loss_fn(model, batch, num_items)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    for got, exp in zip(_grads(model), want, strict=True):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_elements", [2**23, 300 * 8])  # one chunk; five, the last one short
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_linear_cross_entropy_matches_the_plain_computation(dtype: torch.dtype, chunk_elements: int,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)  # a trainable head gets its gradient too
    targets = torch.randint(0, 300, (37,))
    targets[::5] = IGNORE_INDEX
    logits = (hidden.to(dtype) @ weight.to(dtype).T).float()
    plain = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    plain_grads = torch.autograd.grad(plain * 0.5, (hidden, weight))
    chunked = linear_cross_entropy(hidden, weight, targets, dtype)
    chunked_grads = torch.autograd.grad(chunked * 0.5, (hidden, weight))
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(chunked, plain, **tol)
    for got, exp in zip(chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, exp, **tol)


def test_packed_training_counts_real_tokens_and_matches_padded_losses(make_spec, tmp_path) -> None:
    losses, tokens = {}, {}
    for packing in (False, True):
        sink = ListSink()
        spec = make_spec(data={"packing": packing}, training={"max_steps": 4})
        result = loop.train(spec, tmp_path / str(packing), sink)
        losses[packing] = [m["loss"] for m in sink.metrics() if "loss" in m]
        tokens[packing] = result.tokens_seen
    assert tokens[True] == tokens[False]
    # The same examples per step and the same normalisation: only float rounding differs.
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_collator_follows_the_spec(make_spec) -> None:
    tokenizer = type("T", (), {"pad_token_id": 0})()
    packed = loop.collator(make_spec(), tokenizer)
    assert isinstance(packed, PackingCollator) and packed.max_length == 256  # packing is the default
    assert isinstance(loop.collator(make_spec(data={"packing": False}), tokenizer), PaddingCollator)


def test_bf16_autocast_where_the_cpu_supports_it(make_spec, tmp_path) -> None:
    args = loop.training_arguments(make_spec(), tmp_path, "cpu", has_eval=False)
    assert args.bf16 == supports_bf16("cpu")


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu avx512f avx512bw avx512_vnni", False),  # Ice Lake: oneDNN would emulate bf16, slower than fp32
    ("fpu avx512f avx512_bf16 avx512_vnni", True),  # Cooper Lake / Zen 4
    ("fpu avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
])
def test_only_native_bf16_cpus_count(flags: str, native: bool) -> None:
    from worker.planning.device_profiles import cpu_has_native_bf16

    assert cpu_has_native_bf16(f"processor\t: 0\nflags\t\t: {flags}\n") is native


def test_a_frozen_heads_compute_dtype_copy_is_kept_until_the_weight_changes() -> None:
    head = torch.nn.Linear(8, 32, bias=False).requires_grad_(False)
    first = loss_module.head_weight(head, torch.bfloat16)
    assert first.dtype == torch.bfloat16 and torch.equal(first, head.weight.to(torch.bfloat16))
    assert loss_module.head_weight(head, torch.bfloat16) is first
    with torch.no_grad():
        head.weight.mul_(2)  # an in-place change (a resized or reloaded head would be a new tensor)
    second = loss_module.head_weight(head, torch.bfloat16)
    assert second is not first and torch.equal(second, head.weight.to(torch.bfloat16))
    assert loss_module.head_weight(head.requires_grad_(True), torch.bfloat16) is head.weight  # cast in the loss
    assert loss_module.head_weight(head, None) is head.weight  # no autocast: used as it is
