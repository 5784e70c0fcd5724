"""Canonical JSONL → token ids with loss masks → train/eval split, and a dynamic-padding collator."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from worker.trainer.errors import TrainerError
from worker.trainer.events import MetricSink
from worker.trainer.spec import RunSpec

IGNORE_INDEX = -100  # the label value transformers' loss skips
KINDS = ("text", "prompt", "messages")  # the key that tells each canonical kind apart
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
Example = dict[str, list[int]]


def read_records(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """The records of a canonical JSONL file and their kind ("text", "prompt" or "messages")."""
    with Path(path).open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        raise TrainerError("empty_dataset", f"The dataset {path} has no examples; upload a file with at least one.")
    kind = record_kind(records[0])
    if kind is None:
        raise TrainerError("bad_dataset", f"Line 1 of {path} has none of the keys text, prompt, messages.")
    return kind, records


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template the ChatML one (and its markers as special tokens)."""
    if getattr(tokenizer, "chat_template", None):
        return
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE


def _render(tokenizer: Any, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn (content + end of turn)."""
    full = _render(tokenizer, messages)
    spans, cursor = [], 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        span = _prefix_span(tokenizer, messages, i, full)
        if span is None:
            # The template renders earlier turns differently once later ones exist: find the content instead.
            start = full.find(message["content"], cursor)
            span = (start, start + len(message["content"])) if start >= 0 else None
        if span is not None:
            spans.append(span)
            cursor = span[1]
    return full, spans


def _prefix_span(tokenizer: Any, messages: list[dict], i: int, full: str) -> tuple[int, int] | None:
    """Turn i's span from the renderings just before and just after it, when they are prefixes of `full`."""
    try:
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = _render(tokenizer, messages[: i + 1])
    except Exception:  # templates may refuse partial conversations; the caller falls back
        return None
    if upto.startswith(before) and full.startswith(upto):
        return len(before), len(upto)
    return None


def _tokenize(tokenizer: Any, text: str, spans: list[tuple[int, int]] | None, special: bool) -> Example:
    """Token ids of `text`, labelled where a token starts inside one of `spans` (everywhere if None)."""
    enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if spans is None:
        return {"input_ids": ids, "labels": list(ids)}
    labels = [
        tok if any(s <= start < e for s, e in spans) and end > start else IGNORE_INDEX
        for tok, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids, "labels": labels}


def _with_eos(tokenizer: Any, example: Example) -> Example:
    """Append EOS (labelled) so the model learns where an answer ends."""
    eos = tokenizer.eos_token_id
    if eos is not None and (not example["input_ids"] or example["input_ids"][-1] != eos):
        example["input_ids"].append(eos)
        example["labels"].append(eos)
    return example


def encode_record(tokenizer: Any, kind: str, record: dict[str, Any], train_on: str) -> Example:
    """One canonical record as input_ids and labels (IGNORE_INDEX where no loss is taken)."""
    everything = train_on == "all"
    if kind == "text":
        return _with_eos(tokenizer, _tokenize(tokenizer, record["text"], None, True))
    if kind == "prompt":
        prompt, text = record["prompt"], record["prompt"] + record["completion"]
        spans = None if everything else [(len(prompt), len(text))]
        return _with_eos(tokenizer, _tokenize(tokenizer, text, spans, True))
    text, spans = assistant_spans(tokenizer, record["messages"])
    # The template already writes any BOS it wants; the tokenizer must not add another.
    return _tokenize(tokenizer, text, None if everything else spans, False)


def record_kind(record: dict[str, Any]) -> str | None:
    """The canonical kind of one record ("text", "prompt" or "messages"), or None."""
    return next((k for k in KINDS if k in record), None)


def truncate(example: Example, limit: int) -> Example:
    """The example cut to its first `limit` tokens, as the trainer sees it."""
    return {k: v[:limit] for k, v in example.items()}


def trainable_tokens(example: Example) -> int:
    """How many tokens the loss is taken on."""
    # The first label never counts: the model predicts token t+1 from tokens up to t.
    return sum(label != IGNORE_INDEX for label in example["labels"][1:])


def encode_dataset(spec: RunSpec, tokenizer: Any, sink: MetricSink) -> list[Example]:
    """Every record of spec.data.path tokenised, truncated, and kept only if it has trainable tokens."""
    kind, records = read_records(spec.data.path or "")
    if kind == "messages":
        ensure_chat_template(tokenizer)
    sink.event("log", message=f"tokenising {len(records)} {kind} examples")
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
        sink.event("log", message=f"dropped {dropped} examples with no trainable tokens after truncation")
    return kept


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded (train, eval) split holding out `fraction` of the examples (at least one if fraction > 0)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    return [examples[i] for i in order[n_eval:]], [examples[i] for i in order[:n_eval]]


def build_datasets(spec: RunSpec, tokenizer: Any, sink: MetricSink) -> tuple[list[Example], list[Example]]:
    """The tokenised (train, eval) examples for a run."""
    return split(encode_dataset(spec, tokenizer, sink), spec.data.eval_fraction, spec.training.seed)


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
