"""How closely an export's generations follow the reference (the adapter applied to its base, as in training):
pure functions over token id lists, so they are tested without a model."""

from __future__ import annotations

from collections.abc import Sequence


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading tokens a and b share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def greedy_agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """`exact`: the share of prompts whose greedy continuations are identical; `prefix`: the mean share of each
    reference continuation that the other reproduces before its first different token."""
    if len(reference) != len(other) or not reference:
        raise ValueError("both sides need the same, non-zero number of prompts")
    exact = sum(r == o for r, o in zip(reference, other, strict=True)) / len(reference)
    prefix = sum(common_prefix(r, o) / max(len(r), 1) for r, o in zip(reference, other, strict=True))
    return {"exact": exact, "prefix": prefix / len(reference)}


def top1_agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    """The share of positions where both sides' most likely next token is the same, over every continuation
    position of every prompt (both given the same tokens: teacher-forced, so one early difference does not decide
    the rest)."""
    pairs = [(r, o) for ref, oth in zip(reference, other, strict=True) for r, o in zip(ref, oth, strict=True)]
    if not pairs:
        raise ValueError("no positions to compare")
    return sum(r == o for r, o in pairs) / len(pairs)
