"""Scorers: pure functions (output, example) → a score in [0, 1], or None where the example lacks what the scorer
needs (a regex scorer on a row without a `pattern`). A row whose own field is unusable raises ScorerError."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import regex

REGEX_TIMEOUT_S = 1.0  # a row's pattern is the user's: a catastrophic one must not hang the job
FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(.*?)\n?```$", re.S)
Example = dict[str, Any]


class ScorerError(ValueError):
    """An example the scorer cannot judge because of the example itself (a pattern that does not compile)."""


def normalized(text: str) -> str:
    """Whitespace collapsed and stripped."""
    return " ".join(text.split())


def exact(output: str, example: Example) -> float:
    """1 when the output equals the reference (whitespace normalised, case kept)."""
    return float(normalized(output) == normalized(example["reference"]))


def contains(output: str, example: Example) -> float | None:
    """1 when the reference occurs in the output (whitespace normalised, any case); None for an empty reference."""
    reference = normalized(example["reference"]).casefold()
    return float(reference in normalized(output).casefold()) if reference else None


def regex_match(output: str, example: Example) -> float | None:
    """1 when the row's `pattern` matches somewhere in the output."""
    pattern = example.get("pattern")
    if pattern is None:
        return None
    try:
        return float(regex.search(pattern, output, timeout=REGEX_TIMEOUT_S) is not None)
    except regex.error as exc:
        raise ScorerError(f"{where(example)}: the pattern does not compile ({exc}).") from None
    except TimeoutError:
        raise ScorerError(f"{where(example)}: the pattern took over {REGEX_TIMEOUT_S:g} s on one output; "
                          "simplify it.") from None


def parse_json(output: str) -> tuple[bool, Any]:
    """(parsed, value) of an output as JSON, a ```json fence around it allowed."""
    text = output.strip()
    fenced = FENCE.match(text)
    try:
        return True, json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False, None


def json_valid(output: str, example: Example) -> float:
    """1 when the output is a JSON document."""
    return float(parse_json(output)[0])


def json_schema(output: str, example: Example) -> float | None:
    """1 when the output is JSON that the row's `schema` accepts."""
    import jsonschema

    schema = example.get("schema")
    if schema is None:
        return None
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ScorerError(f"{where(example)}: the schema is not a valid JSON Schema ({exc.message}).") from None
    parsed, value = parse_json(output)
    return float(parsed and validator_class(schema).is_valid(value))


def pick_choice(output: str, choices: list[str]) -> str | None:
    """The choice an output gives: the one it equals, else the longest it starts with ("B) …", "Paris.") unless it
    names another choice of more than one letter too ("Paris or Lyon"), else the only one it mentions as a word;
    None when it gives none or several."""
    said = normalized(output).casefold()
    by_text = {normalized(c).casefold(): c for c in choices}
    if said in by_text:
        return by_text[said]
    mentioned = [text for text in by_text if re.search(rf"(?<!\w){re.escape(text)}(?!\w)", said)]
    for text in sorted(by_text, key=len, reverse=True):
        if said.startswith(text) and (len(said) == len(text) or not said[len(text)].isalnum()):
            others = [m for m in mentioned if m != text and len(m) > 1]
            return None if others else by_text[text]
    return by_text[mentioned[0]] if len(mentioned) == 1 else None


def choice(output: str, example: Example) -> float | None:
    """1 when the choice the output gives is the reference."""
    choices = example.get("choices")
    if choices is None:
        return None
    picked = pick_choice(output, choices)
    return float(picked is not None and normalized(picked).casefold() == normalized(example["reference"]).casefold())


def overlap(output: str, example: Example) -> float | None:
    """chrF (sacrebleu's character n-gram F-score) of the output against the reference, in [0, 1]."""
    from sacrebleu.metrics import CHRF

    if not example["reference"].strip():
        return None
    return CHRF().sentence_score(output, [example["reference"]]).score / 100.0


def where(example: Example) -> str:
    """The example's place in its dataset, for messages."""
    line = example.get("line")
    return f"Line {line}" if line is not None else f"Row {example.get('index', 0) + 1}"


# The judge is not here: it calls an endpoint (worker/evaluation/judge.py).
SCORERS: dict[str, Callable[[str, Example], float | None]] = {
    "exact": exact, "contains": contains, "regex": regex_match, "json": json_valid, "json_schema": json_schema,
    "choice": choice, "overlap": overlap,
}
NEEDS = {"regex": "pattern", "json_schema": "schema", "choice": "choices"}  # the row field each scorer reads
