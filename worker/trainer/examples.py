"""Canonical records → token ids with loss masks, as the trainer and the dataset doctor render them (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.trainer.errors import TrainerError

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
