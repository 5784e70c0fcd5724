"""Causal-LM loss on the labelled positions only, so the vocabulary-wide logits of the rest are never built."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from worker.trainer.data import IGNORE_INDEX


def shifted_labels(labels: torch.Tensor) -> torch.Tensor:
    """Labels aligned with the logits: position t is scored against token t+1 (IGNORE_INDEX at the end)."""
    return torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)


def labelled_positions(targets: torch.Tensor) -> torch.Tensor:
    """Sequence positions where any row has a target (the only logits the loss needs)."""
    return targets.ne(IGNORE_INDEX).any(0).nonzero().squeeze(-1)


def causal_lm_loss(model: Any, inputs: dict[str, torch.Tensor], num_items: Any = None) -> tuple[torch.Tensor, Any]:
    """The same value as the model's own loss (sum / num_items, else mean), from the labelled logits only."""
    inputs = dict(inputs)
    targets = shifted_labels(inputs.pop("labels"))
    keep = labelled_positions(targets)
    outputs = model(**inputs, logits_to_keep=keep)
    # fp32 for the softmax as transformers' ForCausalLMLoss does; only the kept positions are upcast.
    logits = outputs.logits.float().flatten(0, 1)
    kept = targets[:, keep].flatten().to(logits.device)
    total = torch.nn.functional.cross_entropy(logits, kept, ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items if num_items is not None else kept.ne(IGNORE_INDEX).sum().clamp(min=1)
    return total / count, outputs


class LabelledLossTrainer(Trainer):
    """A Trainer whose loss builds logits only where there are labels (completions, not prompts or padding)."""

    def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, num_items_in_batch: Any = None):
        """The causal-LM loss normalised like transformers' (by num_items_in_batch when the Trainer gives it)."""
        loss, outputs = causal_lm_loss(model, inputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss
