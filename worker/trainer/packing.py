"""Padding-free batches: a batch's examples packed into a few rows of at most max_seq_length tokens.

Packing happens inside the collator, so a batch holds exactly the examples it would hold padded: the
optimiser sees the same examples per step, the same labels and the same loss normalisation; only the
padding (and its compute and memory) goes. Rows are capped at max_seq_length, so attention memory is
bounded as with padding instead of growing with the whole batch's length. Below that cap the row width is
picked per batch by a cost model (cheapest_rows): rows as wide as max_seq_length left a quarter of the
positions as padding on alpaca_en_demo with 4 examples a batch; the cheapest width leaves about a tenth.
"""

from __future__ import annotations

import torch

from worker.trainer.data import IGNORE_INDEX, Example

# attention_break_even when the model is not known (SmolLM2-135M's is ~2,600).
DEFAULT_BREAK_EVEN = 2048.0


def first_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity` (longest first, each into the first that fits).

    An item longer than the capacity gets a bin of its own (examples are truncated before, so none should be).
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((b for b, free in enumerate(room) if lengths[i] <= free), None)
        if slot is None:
            bins.append([i])
            room.append(capacity - lengths[i])
        else:
            bins[slot].append(i)
            room[slot] -= lengths[i]
    return bins


def cheapest_rows(lengths: list[int], max_length: int, break_even: float) -> list[list[int]]:
    """First-fit-decreasing bins for the row capacity, from the longest item to max_length, that costs least.

    `rows` rows padded to width W cost about rows × W × (1 + W / break_even): the linear layers grow with the
    positions, attention with their square. A wide capacity leaves one long row beside shorter ones (padding),
    a narrow one makes more rows. About 64 capacities are tried; a batch of 8 takes well under a millisecond.
    """
    def cost(bins: list[list[int]]) -> float:
        width = max(sum(lengths[i] for i in b) for b in bins)
        return len(bins) * width * (1 + width / break_even)

    longest = max(lengths)
    step = max(1, (max_length - longest) // 64)
    capacities = [*range(longest, max_length, step), max_length]  # just the cap when an item reaches it
    return min((first_fit_decreasing(lengths, c) for c in capacities), key=cost)


def attention_break_even(params: int, layers: int, hidden: int) -> float:
    """The row length at which attention's FLOPs match the linear layers' (for cheapest_rows).

    Per token the matmuls cost ~4 × params FLOPs (forward, and the input gradients backward); attention
    costs ~12 × layers × hidden × row length (QKᵀ and PV, forward and twice that backward).
    """
    return params / (3 * layers * hidden)


class PackingCollator:
    """Packs a batch into rows of at most `max_length` tokens, position_ids restarting at 0 for every example.

    transformers turns restarting position_ids (with no attention_mask) into a block-diagonal causal mask
    (masking_utils.find_packed_sequence_indices), so no token attends across an example boundary. That
    detection is skipped when there is a KV cache, hence use_cache=False (training needs none). Rows shorter
    than the longest are filled with a padding segment whose positions restart too: it is a "document" of
    its own that nothing else attends to, with no labels. The first label of every example is masked, as
    unpacked no token predicts it either.

    `attention_mask` marks the real tokens for the Trainer's tokens-seen count only: the loss
    (loss.model_inputs) drops it before the forward pass, as an attention_mask would switch off the
    packed-sequence detection. EOS may share the pad id, so the count cannot come from the ids.

    `flatten` (for FlashAttention-2, model.varlen_attention): the whole batch in one row, no padding. The varlen
    kernel takes each example's span from the restarting position_ids, which transformers reads as packing only
    in a batch of one row; rows of several would let examples attend to each other. Its cost is linear in the
    row's length, so the max_length cap on rows is not needed there.
    """

    def __init__(self, max_length: int, pad_token_id: int = 0, break_even: float = DEFAULT_BREAK_EVEN,
                 flatten: bool = False) -> None:
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.break_even = break_even  # see attention_break_even
        self.flatten = flatten

    def __call__(self, batch: list[Example]) -> dict[str, torch.Tensor | bool]:
        if self.flatten:
            rows = [list(range(len(batch)))]
        else:
            rows = cheapest_rows([len(e["input_ids"]) for e in batch], self.max_length, self.break_even)
        packed = [self._row([batch[i] for i in row]) for row in rows]
        width = max(len(r["input_ids"]) for r in packed)
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": [], "attention_mask": []}
        for row in packed:
            gap = width - len(row["input_ids"])
            out["input_ids"].append(row["input_ids"] + [self.pad_token_id] * gap)
            out["labels"].append(row["labels"] + [IGNORE_INDEX] * gap)
            out["position_ids"].append(row["position_ids"] + list(range(gap)))
            out["attention_mask"].append([1] * len(row["input_ids"]) + [0] * gap)
        return {**{k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}, "use_cache": False}

    @staticmethod
    def _row(examples: list[Example]) -> dict[str, list[int]]:
        """One row: the examples back to back, each first label masked, positions restarting."""
        row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for e in examples:
            row["input_ids"] += e["input_ids"]
            row["labels"] += [IGNORE_INDEX] + e["labels"][1:]
            row["position_ids"] += range(len(e["input_ids"]))
        return row
