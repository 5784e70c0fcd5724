"""Word-level differences between two sampled answers, for the run page's Samples section (difflib at render)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from app.core.services.samples import RunSamples

_WORDS = re.compile(r"\S+|\s+")


@dataclass(frozen=True)
class Piece:
    """A run of text: kept ("same"), new in this answer ("ins") or gone from the previous one ("del")."""

    op: str
    text: str


def word_diff(before: str, after: str) -> list[Piece]:
    """`after` as pieces against `before`, words (and the spaces between them) as units."""
    old, new = _WORDS.findall(before), _WORDS.findall(after)
    pieces: list[Piece] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces.append(Piece("same", "".join(new[j1:j2])))
            continue
        if tag in ("replace", "delete") and "".join(old[i1:i2]).strip():
            pieces.append(Piece("del", "".join(old[i1:i2])))
        if tag in ("replace", "insert"):
            pieces.append(Piece("ins", "".join(new[j1:j2])))
    return pieces


def timelines(found: RunSamples) -> list[dict[str, Any]]:
    """Each prompt with its answers in order, each answer's pieces against the answer before it."""
    out = []
    for prompt in found.prompts:
        rows, previous = [], None
        for answer in prompt.answers:
            pieces = [Piece("same", answer.output)] if previous is None else word_diff(previous, answer.output)
            rows.append({"answer": answer, "pieces": pieces, "changed": previous is not None
                         and answer.output != previous})
            previous = answer.output
        out.append({"prompt": prompt, "rows": rows})
    return out
