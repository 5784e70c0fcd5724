"""A run's examples: canonical JSONL tokenised (worker.trainer.examples) → train/eval split, and a dynamic-padding
collator."""

from __future__ import annotations

import random
from typing import Any

import torch

from worker.planning.reports import Log
from worker.planning.spec import RunSpec
from worker.trainer.errors import TrainerError
from worker.trainer.examples import (
    IGNORE_INDEX,
    Example,
    encode_record,
    ensure_chat_template,
    read_records,
    trainable_tokens,
    truncate,
)
from worker.trainer.sinks import ReportSink


def encode_dataset(spec: RunSpec, tokenizer: Any, sink: ReportSink, data_path: str | None = None) -> list[Example]:
    """Every record of the canonical JSONL at data_path (default spec.data.path) tokenised, truncated, and kept only
    if it has trainable tokens."""
    kind, records = read_records(data_path or spec.data.path or "")
    if kind == "messages":
        ensure_chat_template(tokenizer)
    sink.emit(Log(message=f"tokenising {len(records)} {kind} examples"))
    limit = spec.data.max_seq_length
    examples = []
    for record in records:
        example = encode_record(tokenizer, kind, record, spec.data.train_on)
        examples.append(truncate(example, limit))
    kept = [e for e in examples if trainable_tokens(e)]
    if not kept:
        raise TrainerError(
            "no_trainable_tokens",
            f"No example has a token to learn from after truncation to {limit} tokens; raise "
            "data.max_seq_length or check that the examples have completions / assistant turns.",
        )
    if dropped := len(examples) - len(kept):
        sink.emit(Log(message=f"dropped {dropped} examples with no trainable tokens after truncation"))
    return kept


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded (train, eval) split holding out `fraction` of the examples (at least one if fraction > 0)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    return [examples[i] for i in order[n_eval:]], [examples[i] for i in order[:n_eval]]


def build_datasets(spec: RunSpec, tokenizer: Any, sink: ReportSink,
                   data_path: str | None = None) -> tuple[list[Example], list[Example]]:
    """The tokenised (train, eval) examples for a run."""
    return split(encode_dataset(spec, tokenizer, sink, data_path), spec.data.eval_fraction, spec.training.seed)


class PaddingCollator:
    """Pads a batch to its longest example: pad id for inputs, 0 in the attention mask, IGNORE_INDEX in labels."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in batch)
        out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for e in batch:
            gap = width - len(e["input_ids"])
            out["input_ids"].append(e["input_ids"] + [self.pad_token_id] * gap)
            out["attention_mask"].append([1] * len(e["input_ids"]) + [0] * gap)
            out["labels"].append(e["labels"] + [IGNORE_INDEX] * gap)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
