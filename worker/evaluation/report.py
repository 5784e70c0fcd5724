"""The "did it help?" numbers, pure: each side's mean with a confidence interval (Wilson for pass/fail scores, a
seeded bootstrap otherwise), the paired difference with a bootstrap interval, flips, and identical outputs."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054
RESAMPLES = 1000
PASS = 0.5  # a score at or above this counts as right, for flips


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (95% by default); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _percentiles(values: list[float]) -> tuple[float, float]:
    values.sort()
    return values[int(0.025 * (len(values) - 1))], values[int(math.ceil(0.975 * (len(values) - 1)))]


def bootstrap_mean(scores: Sequence[float], rng: random.Random, resamples: int = RESAMPLES) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the mean."""
    n = len(scores)
    if n == 0:
        return 0.0, 1.0
    return _percentiles([sum(rng.choices(scores, k=n)) / n for _ in range(resamples)])


def paired_difference(base: Sequence[float], adapter: Sequence[float], rng: random.Random,
                      resamples: int = RESAMPLES) -> tuple[float, float]:
    """A 95% bootstrap interval of mean(adapter − base), resampling examples (so each keeps its pair)."""
    diffs = [a - b for a, b in zip(adapter, base, strict=True)]
    return bootstrap_mean(diffs, rng, resamples)


def side(scores: Sequence[float], rng: random.Random) -> dict[str, Any]:
    """One side's mean, n and interval (Wilson when every score is 0 or 1)."""
    n = len(scores)
    mean = sum(scores) / n if n else None
    binary = all(s in (0.0, 1.0) for s in scores)
    low, high = wilson(int(sum(scores)), n) if binary else bootstrap_mean(scores, rng)
    return {"mean": mean, "n": n, "ci": [low, high], "method": "wilson" if binary else "bootstrap"}


def scorer_summary(pairs: list[tuple[float | None, float | None]], rng: random.Random,
                   compared: bool) -> dict[str, Any] | None:
    """A scorer's numbers over the examples where it applies (both sides scored, when compared)."""
    if compared:
        kept = [(b, a) for b, a in pairs if b is not None and a is not None]
    else:
        kept = [(b, None) for b, _ in pairs if b is not None]
    if not kept:
        return None
    base = [b for b, _ in kept]
    out: dict[str, Any] = {"base": side(base, rng)}
    if compared:
        adapter = [a for _, a in kept]
        low, high = paired_difference(base, adapter, rng)
        out["adapter"] = side(adapter, rng)
        out["difference"] = {"mean": out["adapter"]["mean"] - out["base"]["mean"], "ci": [low, high]}
    return out


def flip(base: float | None, adapter: float | None) -> str | None:
    """"fixed" (wrong → right), "regressed" (right → wrong) or None."""
    if base is None or adapter is None:
        return None
    if base < PASS <= adapter:
        return "fixed"
    if adapter < PASS <= base:
        return "regressed"
    return None


def summarize(examples: list[dict[str, Any]], scorers: list[str], seed: int = 0) -> dict[str, Any]:
    """The summary of one part's scored examples (each with base_output, adapter_output (None: no adapter),
    base_scores and adapter_scores); sets each example's `flip` on the first scorer that applies to it."""
    compared = bool(examples) and all(e.get("adapter_output") is not None for e in examples)
    rng = random.Random(seed)
    by_scorer = {}
    for name in scorers:
        pairs = [(e["base_scores"].get(name), e["adapter_scores"].get(name)) for e in examples]
        numbers = scorer_summary(pairs, rng, compared)
        if numbers is not None:
            by_scorer[name] = numbers
    primary = next(iter(by_scorer), None)
    for e in examples:
        e["flip"] = flip(e["base_scores"].get(primary), e["adapter_scores"].get(primary)) if compared else None
    identical = compared and all(e["base_output"] == e["adapter_output"] for e in examples)
    return {"n": len(examples), "compared": compared, "primary": primary, "scorers": by_scorer,
            "fixed": sum(e["flip"] == "fixed" for e in examples),
            "regressed": sum(e["flip"] == "regressed" for e in examples),
            "identical_outputs": sum(e.get("adapter_output") == e["base_output"] for e in examples) if compared
            else None,
            "no_measurable_effect": identical}
