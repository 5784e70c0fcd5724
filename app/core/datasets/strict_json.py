"""Strict JSON for rows: duplicate keys and runaway nesting are refused with the line, never guessed at."""

from __future__ import annotations

import json
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


DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs)


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
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
