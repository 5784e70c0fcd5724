"""Eval sets are the studio's datasets: a row's prompt is its prompt (or its chat without the final assistant turn),
its reference the completion (or that final answer); a row may add `choices`, `pattern` or `schema` for the
scorers that use them. Pure functions on rows, used by the web (to refuse a useless set at once) and the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.datasets.canonical import as_object, canonical_row
from app.core.datasets.limits import Limits
from app.core.datasets.readers import read_rows
from app.core.errors import StudioError

EXTRAS = ("choices", "pattern", "schema")
MAX_EXTRA_CHARS = 20_000  # a pattern or schema longer than this is not a scorer's input but a mistake


def example_of(canonical: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The example a canonical row gives ({"index", "prompt" | "messages", "reference"}), or None for a row that
    has no prompt to ask (a plain text row, an empty prompt, a chat with no user turn before its answer)."""
    if "prompt" in canonical:
        if not canonical["prompt"].strip():
            return None
        return {"index": index, "prompt": canonical["prompt"], "reference": canonical["completion"]}
    messages = canonical.get("messages")
    if not messages:
        return None
    last = messages[-1]
    reference = last["content"] if last["role"] == "assistant" else ""
    asked = messages[:-1] if last["role"] == "assistant" else messages
    if not any(m["role"] == "user" and m["content"].strip() for m in asked):
        return None
    return {"index": index, "messages": [{"role": m["role"], "content": m["content"]} for m in asked],
            "reference": reference}


def prompt_text(example: dict[str, Any]) -> str:
    """The prompt as one stored string: the text itself, or the chat as JSON."""
    if "prompt" in example:
        return example["prompt"]
    return json.dumps(example["messages"], ensure_ascii=False)


def usable_examples(rows: list[dict[str, Any]], first: int = 0) -> list[dict[str, Any]]:
    """The examples of canonical rows numbered from `first`, rows without a prompt left out."""
    found = (example_of(row, first + offset) for offset, row in enumerate(rows))
    return [example for example in found if example is not None]


def extras_of(raw: Any, line: int) -> dict[str, Any]:
    """A raw row's scorer fields (choices: a list of strings; pattern: a string; schema: an object or a boolean),
    or a StudioError naming the line and the field."""
    row = as_object(raw, line)
    extras: dict[str, Any] = {}
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c.strip() for c in choices):
            raise _bad_extra(line, "choices", "a non-empty list of non-empty strings")
        extras["choices"] = choices
    pattern = row.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_EXTRA_CHARS:
            raise _bad_extra(line, "pattern", f"a regular expression of 1 to {MAX_EXTRA_CHARS:,} characters")
        extras["pattern"] = pattern
    schema = row.get("schema")
    if schema is not None:
        if not isinstance(schema, dict | bool) or len(json.dumps(schema)) > MAX_EXTRA_CHARS:
            raise _bad_extra(line, "schema", f"a JSON Schema (an object) of at most {MAX_EXTRA_CHARS:,} characters")
        extras["schema"] = schema
    return extras


def _bad_extra(line: int, field: str, what: str) -> StudioError:
    return StudioError("invalid", "invalid_eval_row", f"Line {line}: \"{field}\" must be {what}.", field=field,
                       line=line)


def read_examples(path: Path, file_type: str, format: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` examples of a dataset's original file, each with its scorer fields, in row order."""
    examples: list[dict[str, Any]] = []
    for index, (line, raw) in enumerate(read_rows(path, file_type, Limits())):  # type: ignore[arg-type]
        if len(examples) >= limit:
            break
        example = example_of(canonical_row(as_object(raw, line), format, line), index)  # type: ignore[arg-type]
        if example is not None:
            examples.append({**example, "line": line, **extras_of(raw, line)})
    return examples
