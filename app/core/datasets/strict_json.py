"""Strict JSON for rows: duplicate keys and runaway nesting are refused with the line, never guessed at."""

from __future__ import annotations

import json
import math
from typing import Any

from app.core.datasets.problems import DatasetProblem


class DuplicateKey(ValueError):
    """An object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's default keeps the last duplicate silently; which value was meant is unknowable, so refuse."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


# Python refuses to turn longer digit strings into ints (and back): json.loads would raise a bare ValueError.
MAX_NUMBER_DIGITS = 4300


class BadNumber:
    """A number JSON's grammar (or Python's lenient parser) allows but no JSON store keeps: over MAX_NUMBER_DIGITS
    digits, overflowing a float (1e400), or NaN/Infinity. It stands in the row until check_row names its field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _int(text: str) -> int | BadNumber:
    return int(text) if len(text) <= MAX_NUMBER_DIGITS else BadNumber(text)


def _float(text: str) -> float | BadNumber:
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_int=_int, parse_float=_float,
                           parse_constant=BadNumber)


def duplicate_key(error: DuplicateKey, line: int) -> DatasetProblem:
    """The problem for a duplicate key, naming the key as the field."""
    return DatasetProblem(
        "duplicate_key",
        f'Line {line}: the key "{error.key}" appears twice in one object; keep only the value you mean.',
        line=line,
        field=error.key,
    )


def too_deep(line: int, max_depth: int) -> DatasetProblem:
    """The problem for a row nested deeper than the limit (or than the parser's recursion allows)."""
    return DatasetProblem(
        "too_deeply_nested",
        f"Line {line} nests arrays or objects more than {max_depth} levels deep; flatten the row.",
        line=line,
    )


def deeper_than(value: Any, limit: int) -> bool:
    """Whether value nests lists/dicts more than `limit` levels (iterative, so it cannot overflow the stack)."""
    return _scan(value, limit) == "deep"


def check_row(value: Any, line: int, max_depth: int) -> None:
    """Refuse a row nested more than max_depth levels, or holding a BadNumber (named by its field)."""
    found = _scan(value, max_depth)
    if found == "deep":
        raise too_deep(line, max_depth)
    if found == "number":
        field, number = _bad_number_field(value)
        shown = number.text if len(number.text) <= 20 else f"{number.text[:12]}… ({len(number.text)} characters)"
        raise DatasetProblem(
            "invalid_number",
            f"Line {line}: {field} is the number {shown}, which cannot be stored (more than {MAX_NUMBER_DIGITS} "
            "digits, beyond a float's range, or NaN/Infinity); write it as a string in quotes, or drop it.",
            line=line,
            field=field,
        )


def _scan(value: Any, limit: int) -> str | None:
    """"deep", "number" (a BadNumber inside) or None, in one iterative pass that cannot overflow the stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            if isinstance(item, BadNumber):
                return "number"
            continue
        if depth > limit:
            return "deep"
        stack.extend((child, depth + 1) for child in children)
    return None


def _bad_number_field(value: Any) -> tuple[str, BadNumber]:
    """The path (messages[2].content) of the first BadNumber in a row known to hold one (and within depth)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, field = stack.pop()
        if isinstance(item, BadNumber):
            return field or "row", item
        if isinstance(item, dict):
            stack.extend((child, f"{field}.{key}" if field else str(key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{field}[{index}]") for index, child in enumerate(item))
    raise ValueError("no bad number in the row")
