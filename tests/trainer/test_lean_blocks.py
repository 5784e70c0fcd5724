"""Lean SiLU·up and RMS norms (worker.trainer.lean_blocks): the same outputs bit for bit and the same gradients as
transformers' modules, in fp32 and bf16; fewer bytes saved for backward; other modules left alone."""

from __future__ import annotations

import copy

import pytest
import torch

from worker.trainer.lean_blocks import use_lean_blocks


def _model(tiny_model, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype)


def _saved_bytes(model, ids) -> tuple[torch.Tensor, int]:
    """The loss, and the bytes autograd saved for backward in the forward (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    return loss, sum(storages.values())


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_same_outputs_and_gradients_as_transformers_modules(tiny_model, dtype: torch.dtype, tol: float) -> None:
    reference = _model(tiny_model, dtype)
    lean = copy.deepcopy(reference)
    layers = lean.config.num_hidden_layers
    assert use_lean_blocks(lean) == 3 * layers + 1  # each block's MLP and two norms, and the final norm
    ids = torch.randint(0, lean.config.vocab_size, (2, 24))
    want, got = reference(input_ids=ids, labels=ids), lean(input_ids=ids, labels=ids)
    assert torch.equal(got.logits, want.logits), "the same operations in the same order: bit for bit"
    want.loss.backward()
    got.loss.backward()
    for (name, a), (_, b) in zip(reference.named_parameters(), lean.named_parameters(), strict=True):
        assert b.grad is not None, name  # the norms' weights get their gradient too
        torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol * a.grad.abs().max().item(), msg=name)


def test_fewer_tensors_are_saved_for_backward(tiny_model) -> None:
    reference = _model(tiny_model, torch.float32).requires_grad_(False)
    reference.get_input_embeddings().requires_grad_(True)  # gradients flow through every block, as under LoRA
    lean = copy.deepcopy(reference)
    use_lean_blocks(lean)
    ids = torch.randint(0, lean.config.vocab_size, (2, 24))
    _, want = _saved_bytes(reference, ids)
    _, got = _saved_bytes(lean, ids)
    config, tokens = lean.config, ids.numel()
    # Per block SiLU's output, tokens × intermediate in fp32. (With frozen weights the norms save what they saved.)
    assert want - got == config.num_hidden_layers * tokens * 4 * config.intermediate_size


def test_modules_of_other_shapes_keep_their_forward(tiny_model) -> None:
    model = _model(tiny_model, torch.float32)
    model.model.layers[0].mlp.act_fn = torch.nn.GELU()  # not SiLU: not the product _SiluMul computes
    forward = model.model.layers[0].mlp.forward
    assert use_lean_blocks(model) == 3 * model.config.num_hidden_layers  # that MLP left out
    assert model.model.layers[0].mlp.forward == forward
