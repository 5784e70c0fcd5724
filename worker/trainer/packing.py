"""Padding-free batches: a batch's examples packed into one row, attention kept inside each example."""

from __future__ import annotations

import torch

from worker.trainer.data import IGNORE_INDEX, Example


class PackingCollator:
    """Concatenates a batch into one row with position_ids restarting at 0 for every example.

    transformers turns restarting position_ids (with no attention_mask) into a block-diagonal causal
    mask (masking_utils.find_packed_sequence_indices), so no token attends across an example boundary.
    That detection is skipped when there is a KV cache, hence use_cache=False (training needs none).
    The first label of every example is masked: unpacked, no token predicts it either.
    """

    def __call__(self, batch: list[Example]) -> dict[str, torch.Tensor | bool]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for e in batch:
            ids += e["input_ids"]
            labels += [IGNORE_INDEX] + e["labels"][1:]
            positions += range(len(e["input_ids"]))
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions]), "use_cache": False}
