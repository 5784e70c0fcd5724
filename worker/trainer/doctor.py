"""The dataset doctor: token lengths, truncation, loss-mask previews and warnings, as the trainer renders them."""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterable
from typing import Any

from worker.trainer.examples import (
    IGNORE_INDEX,
    default_system_prompt,
    encode_record,
    ensure_chat_template,
    record_kind,
    trainable_tokens,
    truncate,
)
from worker.trainer.placeholders import PlaceholderTally

WARNING_ROWS = 5  # row numbers kept per warning: enough to find the pattern, small enough to store
HISTOGRAM_BINS = 24
EXAMPLE_TOKENS = 2048  # an example's preview stops here; a 30k-token row would bloat the stored result
MESSAGES = {
    "template_error": "{rows} could not be rendered with the chat template (the trainer would stop there): "
                      "{detail}",
    "missing_assistant": "{convs} {have} no assistant turn, so nothing is learned from {them}.",
    "empty_assistant": "{rows} {have} an empty assistant turn or completion: the model learns to say nothing.",
    "role_order": "{convs} {have} turns out of order (system not first, not starting with the user, the same "
                  "role twice in a row, or ending after the last assistant turn).",
    "duplicate_rows": "{rows} {repeat} an earlier row exactly; duplicates weigh those examples more.",
    "no_eos": "{rows} {have} no EOS token ({eos}) after rendering and truncation to {limit} tokens; the model "
              "may not learn where an answer ends.",
    "no_trained_tokens": "{rows} {have} no trained token left after truncation to {limit} tokens; the trainer "
                         "drops {them}.",
    "unfilled_placeholders": "{rows} {contain} template placeholders that were never filled in; the model would "
                             "learn them literally. {detail}",
    "default_system_prompt": "{convs} {have} no system turn, so the model's chat template inserts its default "
                             "system prompt into {them}: \"{detail}\". It can contradict what the data teaches "
                             "(an identity, for one); set data.system_prompt (for example to the identity your "
                             "data teaches) to replace it.",
    "system_prompt_ignored": "{rows} {use} no chat template (plain text or prompt/completion), so the system "
                             "prompt is not applied to {them}.",
}


def analyze(rows: Iterable[dict[str, Any]], tokenizer: Any, max_seq_length: int, examples: int = 20,
            train_on: str = "completions", system_prompt: str | None = None) -> dict[str, Any]:
    """Render every canonical row with the trainer's code (and a run's data.system_prompt) and report lengths,
    truncation, masks and warnings."""
    doctor = _Doctor(tokenizer, max_seq_length, examples, train_on, system_prompt or None)
    for number, row in enumerate(rows, start=1):
        doctor.add(number, row)
    return doctor.result()


class _Doctor:
    """Accumulates one pass over the rows; only the lengths grow with the dataset."""

    def __init__(self, tokenizer: Any, limit: int, examples: int, train_on: str, system_prompt: str | None) -> None:
        self.tokenizer, self.limit, self.n_examples, self.train_on = tokenizer, limit, examples, train_on
        self.system_prompt = system_prompt
        self.kind: str | None = None
        self.default_system: str | None = None
        self.placeholders = PlaceholderTally()
        self.lengths = array("I")
        self.examples: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.rows: dict[str, list[int]] = {}
        self.details: dict[str, str] = {}
        self.seen: set[bytes] = set()
        self.row_count = self.trained_tokens = 0

    def add(self, number: int, row: dict[str, Any]) -> None:
        """Check one canonical row and, when it renders, measure it."""
        self.row_count += 1
        kind = record_kind(row)
        if self.kind is None and kind is not None:
            self.kind = kind
            if kind == "messages":  # as encode_dataset does: ChatML for a tokenizer without a template
                ensure_chat_template(self.tokenizer)
                self.default_system = default_system_prompt(self.tokenizer)
        for code in row_problems(row):
            self._flag(code, number)
        self._check_system(number, kind, row)
        if self.placeholders.add(number, row):
            self._flag("unfilled_placeholders", number)
        digest = _digest(row)
        if digest in self.seen:
            self._flag("duplicate_rows", number)
        self.seen.add(digest)
        try:
            example = encode_record(self.tokenizer, kind or "text", row, self.train_on, self.system_prompt)
        except Exception as exc:  # a template that rejects a conversation; encode_dataset would stop here
            self.details.setdefault("template_error", f"row {number}: {exc}")
            self._flag("template_error", number)
            return
        self._measure(number, example)

    def _check_system(self, number: int, kind: str | None, row: dict[str, Any]) -> None:
        """Which system turn the row gets: the template's default (warned), the run's, or none (not chat)."""
        if kind != "messages":
            if self.system_prompt:
                self._flag("system_prompt_ignored", number)
            return
        own = any(m.get("role") == "system" for m in row.get("messages") or [])
        if self.default_system and not self.system_prompt and not own:
            self.details["default_system_prompt"] = self.default_system
            self._flag("default_system_prompt", number)

    def _measure(self, number: int, example: dict[str, list[int]]) -> None:
        self.lengths.append(len(example["input_ids"]))
        seen = truncate(example, self.limit)
        trained = trainable_tokens(seen)
        self.trained_tokens += trained
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos not in seen["input_ids"]:
            self._flag("no_eos", number)
        if not trained:
            self._flag("no_trained_tokens", number)
        if len(self.examples) < self.n_examples:
            self.examples.append(self._example(number, example, trained))

    def _example(self, number: int, example: dict[str, list[int]], trained: int) -> dict[str, Any]:
        ids, labels = example["input_ids"], example["labels"]
        shown = min(len(ids), EXAMPLE_TOKENS)
        return {"row": number, "tokens": len(ids), "trained_tokens": trained, "truncated": len(ids) > self.limit,
                "omitted_tokens": len(ids) - shown,
                "segments": segments(self.tokenizer, ids[:shown], labels[:shown], self.limit)}

    def _flag(self, code: str, number: int) -> None:
        self.counts[code] += 1
        kept = self.rows.setdefault(code, [])
        if len(kept) < WARNING_ROWS:
            kept.append(number)

    def result(self) -> dict[str, Any]:
        """The JSON-able findings."""
        lengths = sorted(self.lengths)
        truncated = sum(1 for n in lengths if n > self.limit)
        return {
            "kind": self.kind, "row_count": self.row_count, "max_seq_length": self.limit, "train_on": self.train_on,
            "eos_token": self.tokenizer.eos_token, "lengths": histogram(lengths, self.limit),
            "truncated_count": truncated, "truncated_share": truncated / len(lengths) if lengths else 0.0,
            "token_stats": token_stats(lengths), "trained_tokens": self.trained_tokens,
            "system_prompt": self.system_prompt, "default_system_prompt": self.default_system,
            "examples": self.examples, "warnings": self._warnings(),
        }

    def _warnings(self) -> list[dict[str, Any]]:
        if self.counts["unfilled_placeholders"]:
            self.details["unfilled_placeholders"] = self.placeholders.advice()
        warnings = [
            {"code": code, "count": self.counts[code], "rows": self.rows[code],
             "message": text.format(**self._words(self.counts[code]), detail=self.details.get(code, ""),
                                    eos=self.tokenizer.eos_token, limit=self.limit)}
            for code, text in MESSAGES.items() if self.counts[code]
        ]
        for warning in warnings:
            if warning["code"] == "unfilled_placeholders":
                warning["placeholders"] = self.placeholders.summary()
        return warnings

    @staticmethod
    def _words(count: int) -> dict[str, str]:
        """The count with its noun and verb agreeing ("1 row has", "3 rows have")."""
        one = count == 1
        return {"rows": f"{count:,} row{'' if one else 's'}", "convs": f"{count:,} conversation{'' if one else 's'}",
                "have": "has" if one else "have", "repeat": "repeats" if one else "repeat",
                "contain": "contains" if one else "contain", "use": "uses" if one else "use",
                "them": "it" if one else "them"}


def row_problems(row: dict[str, Any]) -> list[str]:
    """Warning codes for one canonical row's structure: missing/empty assistant turns and role order."""
    if "completion" in row:
        return [] if str(row.get("completion") or "").strip() else ["empty_assistant"]
    if "messages" not in row:
        return []
    messages = row.get("messages") or []
    roles = [m.get("role") for m in messages]
    answers = [m for m in messages if m.get("role") == "assistant"]
    codes = []
    if not answers:
        codes.append("missing_assistant")
    elif any(not str(m.get("content") or "").strip() for m in answers):
        codes.append("empty_assistant")
    if _bad_order(roles, bool(answers)):
        codes.append("role_order")
    return codes


def _bad_order(roles: list[Any], answered: bool) -> bool:
    """System only first, then user first, roles alternating, and an assistant turn last."""
    body = roles[1:] if roles[:1] == ["system"] else roles
    turns = [r for r in body if r != "tool"]  # tool results sit between assistant turns and break no order
    if "system" in turns or not turns or turns[0] != "user":
        return True
    if any(a == b for a, b in zip(turns, turns[1:], strict=False)):
        return True
    return answered and turns[-1] != "assistant"


def segments(tokenizer: Any, ids: list[int], labels: list[int], limit: int) -> list[dict[str, Any]]:
    """The rendered tokens as runs of trained/masked text; `cut` marks tokens past max_seq_length."""
    bounds: list[tuple[int, int, bool, bool]] = []
    for i, label in enumerate(labels):
        key = (label != IGNORE_INDEX, i >= limit)
        if bounds and bounds[-1][2:] == key:
            bounds[-1] = (bounds[-1][0], i + 1, *key)
        else:
            bounds.append((i, i + 1, *key))
    texts = _texts(tokenizer, ids, [(start, end) for start, end, _, _ in bounds])
    return [{"text": text, "trained": trained, "cut": cut}
            for text, (_, _, trained, cut) in zip(texts, bounds, strict=True)]


def _texts(tokenizer: Any, ids: list[int], bounds: list[tuple[int, int]]) -> list[str]:
    """Each run's text as the difference of prefix decodings, so spaces and split characters land right."""
    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    texts, previous = [], ""
    for start, end in bounds:
        upto = decode(ids[:end])
        texts.append(upto[len(previous):] if upto.startswith(previous) else decode(ids[start:end]))
        previous = upto
    return texts


def histogram(lengths: list[int], limit: int, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Token-length counts in equal bins of a round width, spanning at least 0..limit."""
    top = max(lengths[-1] if lengths else 0, limit)
    width = _round_width(top / bins)
    counts = [0] * (top // width + 1)
    for n in lengths:
        counts[n // width] += 1
    return {"bin_width": width, "edges": [i * width for i in range(len(counts) + 1)], "counts": counts}


def _round_width(raw: float) -> int:
    """The smallest 1, 2 or 5 × 10^k at or above raw."""
    scale = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    return next(step * scale for step in (1, 2, 5, 10) if step * scale >= raw)


def token_stats(lengths: list[int]) -> dict[str, float | int | None]:
    """Min, median, 95th percentile (nearest rank), max and mean of sorted lengths."""
    if not lengths:
        return {"min": None, "median": None, "p95": None, "max": None, "mean": None}
    mid = len(lengths) // 2
    median = lengths[mid] if len(lengths) % 2 else (lengths[mid - 1] + lengths[mid]) / 2
    p95 = lengths[max(0, math.ceil(0.95 * len(lengths)) - 1)]
    return {"min": lengths[0], "median": median, "p95": p95, "max": lengths[-1],
            "mean": round(sum(lengths) / len(lengths), 1)}


def _digest(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(json.dumps(row, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()
