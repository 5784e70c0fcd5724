"""Rows in the canonical form the trainer reads: {"text"}, {"prompt", "completion"} or {"messages"}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core.datasets.checks import array, optional_text, require, text, type_name, wrong_type
from app.core.datasets.conversations import messages_row, sharegpt_row
from app.core.datasets.formats import REQUIRED_KEYS, Format
from app.core.datasets.problems import DatasetProblem


def as_object(row: Any, line: int) -> dict[str, Any]:
    """The row itself when it is a JSON object, else not_an_object."""
    if not isinstance(row, dict):
        raise DatasetProblem(
            "not_an_object",
            f'Line {line} is {type_name(row)}, not an object; every row must be an object such as {{"text": "..."}}.',
            line=line,
        )
    return row


def canonical_row(row: dict[str, Any], format: Format, line: int) -> dict[str, Any]:
    """Check one row against its format and return its canonical form."""
    missing = [key for key in REQUIRED_KEYS[format] if key not in row]
    if missing:
        needs = " and ".join(f'"{key}"' for key in REQUIRED_KEYS[format])
        raise DatasetProblem(
            "missing_field",
            f'Line {line}: "{missing[0]}" is missing; {format} rows need {needs}.',
            line=line,
            field=missing[0],
        )
    return CONVERTERS[format](row, line)


def text_row(row: dict[str, Any], line: int) -> dict[str, str]:
    """{"text": ...} with some text in it."""
    return {"text": text(require(row, "text", "text", line), "text", line, required=True)}


def prompt_completion_row(row: dict[str, Any], line: int) -> dict[str, str]:
    """{"prompt", "completion"}; the prompt may be empty, the completion (what is learned) may not."""
    prompt = text(require(row, "prompt", "prompt", line), "prompt", line, required=False)
    completion = text(require(row, "completion", "completion", line), "completion", line, required=True)
    return {"prompt": prompt, "completion": completion}


def alpaca_row(row: dict[str, Any], line: int) -> dict[str, list[dict[str, str]]]:
    """Alpaca as messages: system, history pairs, instruction + "\\n\\n" + input, then output."""
    instruction = text(require(row, "instruction", "instruction", line), "instruction", line, required=False)
    extra = optional_text(row, "input", line)
    prompt = "\n\n".join(part for part in (instruction, extra) if part.strip())
    if not prompt:
        text(instruction, "instruction", line, required=True)  # raises empty_field on the instruction
    output = text(require(row, "output", "output", line), "output", line, required=True)
    system = optional_text(row, "system", line)
    messages = [{"role": "system", "content": system}] if system else []
    messages += _history(row.get("history"), line)
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _history(value: Any, line: int) -> list[dict[str, str]]:
    """Earlier [question, answer] pairs as user/assistant turns."""
    turns: list[dict[str, str]] = []
    for index, pair in enumerate(array(value, "history", line) if value is not None else []):
        field = f"history[{index}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise wrong_type(pair, "a [question, answer] pair", field, line)
        turns.append({"role": "user", "content": text(pair[0], f"{field}[0]", line, required=True)})
        turns.append({"role": "assistant", "content": text(pair[1], f"{field}[1]", line, required=True)})
    return turns


CONVERTERS: dict[Format, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    "text": text_row,
    "prompt_completion": prompt_completion_row,
    "alpaca": alpaca_row,
    "messages": messages_row,
    "sharegpt": sharegpt_row,
}
