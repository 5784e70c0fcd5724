"""A run's examples: canonical JSONL tokenised (worker.trainer.examples) → train/eval split, and a dynamic-padding
collator."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, TypeVar

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

T = TypeVar("T")


def encode_dataset(spec: RunSpec, tokenizer: Any, sink: ReportSink, data_path: str | None = None) -> list[Example]:
    """Every record of the canonical JSONL at data_path (default spec.data.path) tokenised, truncated, and kept only
    if it has trainable tokens."""
    return [example for _, example in _encode(spec, tokenizer, sink, data_path)[1]]


def _encode(spec: RunSpec, tokenizer: Any, sink: ReportSink,
            data_path: str | None) -> tuple[str, list[tuple[dict[str, Any], Example]]]:
    """The records' kind, and each kept record with its example."""
    kind, records = read_records(data_path or spec.data.path or "")
    if kind == "messages":
        ensure_chat_template(tokenizer)
    sink.emit(Log(message=f"tokenising {len(records)} {kind} examples"))
    limit = spec.data.max_seq_length
    examples = []
    for record in records:
        example = encode_record(tokenizer, kind, record, spec.data.train_on, spec.data.system_prompt)
        examples.append((record, truncate(example, limit)))
    kept = [(r, e) for r, e in examples if trainable_tokens(e)]
    if not kept:
        raise TrainerError(
            "no_trainable_tokens",
            f"No example has a token to learn from after truncation to {limit} tokens; raise "
            "data.max_seq_length or check that the examples have completions / assistant turns.",
        )
    if dropped := len(examples) - len(kept):
        sink.emit(Log(message=f"dropped {dropped} examples with no trainable tokens after truncation"))
    return kind, kept


def split(examples: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
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
    data = run_data(spec, tokenizer, sink, data_path)
    return data.train, data.eval


@dataclass
class RunData:
    """A run's tokenised train and eval examples, the records' kind, and the held-out records in split order."""

    train: list[Example]
    eval: list[Example]
    kind: str
    held_out: list[dict[str, Any]]


def run_data(spec: RunSpec, tokenizer: Any, sink: ReportSink, data_path: str | None = None) -> RunData:
    """The run's split; the held-out records are those of the eval examples (sample prompts come from them)."""
    kind, kept = _encode(spec, tokenizer, sink, data_path)
    train, held = split(kept, spec.data.eval_fraction, spec.training.seed)
    return RunData([e for _, e in train], [e for _, e in held], kind, [r for r, _ in held])


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
