"""Causal-LM loss on the labelled positions only, the vocabulary-wide logits built a chunk of tokens at a time.

The output head is the largest activation of a small model: tokens × vocabulary in fp32 (SmolLM2: 49,152
columns, 0.2 MB a token), kept for the softmax's backward with its gradient beside it. Here the head's
matmul, the softmax and its gradient are done chunk by chunk in the forward pass (as Liger's fused linear
cross-entropy does), so only one chunk's logits exist at a time and nothing vocabulary-wide is saved.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from transformers import Trainer
from transformers.modeling_outputs import CausalLMOutput

from worker.trainer.data import IGNORE_INDEX

CHUNK_ELEMENTS = 2**25  # logits per chunk: 128 MiB in fp32, whatever the vocabulary


def shifted_labels(labels: torch.Tensor) -> torch.Tensor:
    """Labels aligned with the logits: position t is scored against token t+1 (IGNORE_INDEX at the end)."""
    return torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)


def labelled_positions(targets: torch.Tensor) -> torch.Tensor:
    """Sequence positions where any row has a target (the only logits the loss needs)."""
    return targets.ne(IGNORE_INDEX).any(0).nonzero().squeeze(-1)


def model_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """What the model gets: packed batches (position_ids) lose the attention_mask that only counts real tokens."""
    out = {k: v for k, v in inputs.items() if k != "labels"}
    if "position_ids" in out:
        out.pop("attention_mask", None)  # it would switch off transformers' packed-sequence masking
    return out


class _LinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T, targets)) with the gradients worked out chunk by chunk in forward."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                dtype: torch.dtype, chunk: int) -> torch.Tensor:
        w = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk].to(dtype), targets[start:start + chunk]
            logits = (h @ w.T).float()  # rounded to the compute dtype first, as the plain path under autocast
            valid, index = t.ne(IGNORE_INDEX), t.clamp(min=0).unsqueeze(1)
            lse = logits.logsumexp(-1)
            total += ((lse - logits.gather(1, index).squeeze(1)) * valid).sum()
            grad = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in place: d(loss)/d(logits) = p - onehot
            grad.scatter_add_(1, index, torch.full_like(index, -1, dtype=grad.dtype))
            grad = (grad * valid.unsqueeze(1)).to(dtype)
            grad_hidden[start:start + chunk] = grad @ w
            if grad_weight is not None:
                grad_weight += (grad.T @ h).float()
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_grad = None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden * grad_total.to(grad_hidden.dtype), weight_grad, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed cross-entropy of hidden [N, H] through a bias-free head weight [V, H], chunked over N."""
    chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, targets, dtype or hidden.dtype, chunk)


def _plain_head(model: Any) -> torch.nn.Linear | None:
    """The output head when it is a bias-free nn.Linear (not LoRA-wrapped or quantised), else None."""
    head = model.get_output_embeddings()
    plain = type(head) is torch.nn.Linear and head.bias is None
    return head if plain else None


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The matmul dtype autocast would use here, or None when autocast is off."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def chunked_lm_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> tuple[torch.Tensor, Any]:
    """The model's causal-LM loss (sum / num_items, else mean) with the head and softmax done in chunks."""
    targets = shifted_labels(inputs["labels"])
    hidden = model.get_decoder()(**model_inputs(inputs)).last_hidden_state
    keep = targets.ne(IGNORE_INDEX)
    head = _plain_head(model)
    total = linear_cross_entropy(hidden[keep], head.weight, targets[keep], _autocast_dtype(hidden.device))
    count = num_items if num_items is not None else keep.sum().clamp(min=1)
    loss = total / count
    return loss, CausalLMOutput(loss=loss)


def labelled_logits_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> tuple[torch.Tensor, Any]:
    """The same value from the model's own forward, logits built at the labelled positions only (any head)."""
    targets = shifted_labels(inputs["labels"])
    keep = labelled_positions(targets)
    outputs = model(**model_inputs(inputs), logits_to_keep=keep)
    # fp32 for the softmax as transformers' ForCausalLMLoss does; only the kept positions are upcast.
    logits = outputs.logits.float().flatten(0, 1)
    kept = targets[:, keep].flatten().to(logits.device)
    total = torch.nn.functional.cross_entropy(logits, kept, ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items if num_items is not None else kept.ne(IGNORE_INDEX).sum().clamp(min=1)
    return total / count, outputs


def causal_lm_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> tuple[torch.Tensor, Any]:
    """Chunked when the head is a plain linear layer, else from the labelled positions' logits."""
    if _plain_head(model) is not None:
        return chunked_lm_loss(model, inputs, num_items)
    return labelled_logits_loss(model, inputs, num_items)


class LabelledLossTrainer(Trainer):
    """A Trainer whose loss never holds the full [tokens × vocabulary] logits (see the module docstring)."""

    def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
        """The causal-LM loss normalised like transformers' (by num_items_in_batch when the Trainer gives it)."""
        # The decoder is called directly, past the autocast that accelerate wraps around model.forward.
        autocast = self.accelerator.autocast() if self.accelerator.native_amp else contextlib.nullcontext()
        with autocast:
            loss, outputs = causal_lm_loss(model, inputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss
