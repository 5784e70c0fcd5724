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
from torch.nn.parallel import DistributedDataParallel
from transformers import Trainer
from transformers.modeling_outputs import CausalLMOutput

from worker.planning.kernels import LOSS_CHUNK_ELEMENTS
from worker.trainer.data import IGNORE_INDEX

CHUNK_ELEMENTS = LOSS_CHUNK_ELEMENTS  # logits per chunk, whatever the vocabulary (the estimate counts the same)


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
        # fp32 whatever hidden's dtype: under fp16 autocast the loss scale multiplies it in backward, and an fp16
        # buffer would round each token's gradient before that (and overflow sooner).
        grad_hidden = torch.empty_like(hidden, dtype=torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # One pair of chunk buffers, reused: logits in the compute dtype and their fp32 exponentials. Fresh
        # [chunk x vocabulary] tensors per chunk cost more than the arithmetic on the CPU (page faults).
        rows = min(chunk, hidden.shape[0])
        low = hidden.new_empty((rows, w.shape[0]), dtype=dtype)
        high = hidden.new_empty((rows, w.shape[0]), dtype=torch.float32)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk].to(dtype), targets[start:start + chunk]
            logits, exps = low[:h.shape[0]], high[:h.shape[0]]
            torch.matmul(h, w.T, out=logits)  # rounded to the compute dtype, as the plain path under autocast
            valid, safe = t.ne(IGNORE_INDEX), t.clamp(min=0)
            picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1).float()
            peak = logits.amax(1, keepdim=True).float()
            norm = torch.sub(logits, peak, out=exps).exp_().sum(1)
            total += ((peak.squeeze(1) + norm.log() - picked) * valid).sum()
            # d(loss)/d(logits) = exps / norm - onehot(t). Only the exponentials go through the vocabulary-wide
            # matmul; the row scale and the one-hot part are applied to its [rows x hidden] result.
            unnormalised = logits.copy_(exps)
            scale = (valid / norm).unsqueeze(1)  # 0 on ignored rows
            onehot_part = w[safe].float() * valid.unsqueeze(1)
            grad_hidden[start:start + chunk] = (unnormalised @ w).float().mul_(scale).sub_(onehot_part)
            if grad_weight is not None:
                grad_weight += (unnormalised.T @ (h.float() * scale).to(dtype)).float()
                grad_weight.index_add_(0, safe, h.float() * valid.unsqueeze(1), alpha=-1)
        ctx.weight_dtype, ctx.hidden_dtype = weight.dtype, hidden.dtype
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_grad = None if grad_weight is None else (grad_weight * grad_total).to(ctx.weight_dtype)
        hidden_grad = (grad_hidden * grad_total.float()).to(ctx.hidden_dtype)
        return hidden_grad, weight_grad, None, None, None


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


def head_weight(head: torch.nn.Linear, dtype: torch.dtype | None) -> torch.Tensor:
    """The head's weight in the compute dtype; a frozen head's copy is kept between steps.

    Casting the 49,152 x 576 head afresh each forward pass cost ~80 ms on the CPU (a new 56 MB tensor is
    page-faulted in every time). A trainable head (its gradient needs the fp32 original) is cast in the loss.
    """
    weight = head.weight
    if dtype is None or weight.dtype == dtype or weight.requires_grad:
        return weight
    key = (dtype, weight.data_ptr(), weight._version)  # a changed or replaced weight is cast again
    cached = head.__dict__.get("_studio_cast")
    if cached is None or cached[0] != key:
        cached = head.__dict__["_studio_cast"] = (key, weight.detach().to(dtype))
    return cached[1]


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
    dtype = _autocast_dtype(hidden.device)
    total = linear_cross_entropy(hidden[keep], head_weight(head, dtype), targets[keep], dtype)
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
            if isinstance(model, DistributedDataParallel):
                loss, outputs = loss_through_ddp(model, inputs, num_items_in_batch)
            else:
                loss, outputs = causal_lm_loss(model, inputs, num_items_in_batch)
        if (self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs
                and num_items_in_batch is not None):  # a tensor's truth would sync with the GPU every micro-step
            # As Trainer.compute_loss does: num_items_in_batch counts every rank's tokens and DDP averages the
            # ranks' gradients, so each rank's share is scaled back up (without it a run on 2 processes logged,
            # and stepped on, half its loss). 1 on one process.
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


def loss_through_ddp(ddp: DistributedDataParallel, inputs: dict, num_items: Any) -> tuple[torch.Tensor, Any]:
    """causal_lm_loss computed inside the DDP wrapper's forward.

    DDP all-reduces gradients only for a backward that follows a forward through the wrapper (its forward arms
    the reducer's hooks); the chunked loss calls the decoder directly, which would skip it and leave every rank
    with its own gradients. So for this one call the wrapped model's forward is the whole loss.
    """
    inner = ddp.module
    inner.forward = lambda **batch: causal_lm_loss(inner, batch, num_items)  # shadows the class's forward
    try:
        return ddp(**inputs)
    finally:
        del inner.forward
