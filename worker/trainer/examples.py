"""Canonical records → token ids with loss masks, as the trainer and the dataset doctor render them (no torch)."""

from __future__ import annotations

import json
import os
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
# A conversation the template cannot mistake for its own text: rendered with and without a system turn, the
# difference is the default system prompt the template inserts when a conversation has none.
PROBE_SYSTEM = "\u27eaprobe system turn\u27eb"
PROBE_CHAT = [{"role": "user", "content": "\u27eaprobe question\u27eb"},
              {"role": "assistant", "content": "\u27eaprobe answer\u27eb"}]


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


def with_system_prompt(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """The conversation with `system_prompt` as its first turn, unless none is set or it has a system turn."""
    if not system_prompt or any(m.get("role") == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def default_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt the chat template writes into a conversation that has none (SmolLM2's, Qwen's), or None."""
    try:
        without = _render(tokenizer, PROBE_CHAT)
        probed = _render(tokenizer, [{"role": "system", "content": PROBE_SYSTEM}, *PROBE_CHAT])
    except Exception:  # a template that refuses system turns has none to insert either
        return None
    head = len(os.path.commonprefix([without, probed]))
    tail = len(os.path.commonprefix([without[::-1], probed[::-1]]))
    tail = min(tail, len(without) - head, len(probed) - head)
    # Where the probe's text went, the template otherwise writes its own; a template that writes the same text
    # whatever the system turn (a date header) or nothing at all leaves an empty difference.
    if PROBE_SYSTEM not in probed[head:len(probed) - tail]:
        return None
    return without[head:len(without) - tail].strip() or None


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


def encode_record(tokenizer: Any, kind: str, record: dict[str, Any], train_on: str,
                  system_prompt: str | None = None) -> Example:
    """One canonical record as input_ids and labels (IGNORE_INDEX where no loss is taken); `system_prompt` becomes
    the system turn of a conversation without one (context only: never labelled)."""
    everything = train_on == "all"
    if kind == "text":
        return _with_eos(tokenizer, _tokenize(tokenizer, record["text"], None, True))
    if kind == "prompt":
        prompt, text = record["prompt"], record["prompt"] + record["completion"]
        spans = None if everything else [(len(prompt), len(text))]
        return _with_eos(tokenizer, _tokenize(tokenizer, text, spans, True))
    messages = with_system_prompt(record["messages"], system_prompt)
    text, spans = assistant_spans(tokenizer, messages)
    if everything:
        # The whole text but the inserted system turn: a setting of the run, not data to learn.
        spans = None if messages is record["messages"] else [(_system_end(tokenizer, messages, text), len(text))]
    # The template already writes any BOS it wants; the tokenizer must not add another.
    return _tokenize(tokenizer, text, spans, False)


def _system_end(tokenizer: Any, messages: list[dict], full: str) -> int:
    """Where the first (system) turn ends in `full`: its own rendering when that is a prefix, else its text's end."""
    try:
        head = _render(tokenizer, messages[:1])
    except Exception:  # templates may refuse a conversation of a system turn alone
        head = ""
    if head and full.startswith(head):
        return len(head)
    start = full.find(messages[0]["content"])
    return start + len(messages[0]["content"]) if start >= 0 else 0


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
