"""Template placeholders left in a dataset's rows ({{name}}, {{author}} in LLaMA-Factory's identity.json): found
per row, and the advice the dataset doctor gives about them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

PLACEHOLDERS_NAMED = 6  # placeholders the advice names; the rest are counted
# A Jinja/Mustache placeholder ({{name}}, {{ user.name }}); JSON's nested braces ({"a": {"b": 1}}) never match.
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}")


def placeholders(row: dict[str, Any]) -> list[str]:
    """The placeholders in a row's strings as written, each once, in the order they first appear."""
    return list(dict.fromkeys(found for text in _strings(row) for found in PLACEHOLDER.findall(text)))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


class PlaceholderTally:
    """How many rows hold each placeholder, with the first few row numbers of each."""

    def __init__(self, examples: int = 3) -> None:
        self.examples = examples
        self.counts: Counter[str] = Counter()
        self.rows: dict[str, list[int]] = {}

    def add(self, number: int, row: dict[str, Any]) -> bool:
        """Count row `number`'s placeholders; True when it has any."""
        found = placeholders(row)
        for text in found:
            self.counts[text] += 1
            kept = self.rows.setdefault(text, [])
            if len(kept) < self.examples:
                kept.append(number)
        return bool(found)

    def summary(self) -> list[dict[str, Any]]:
        """Each placeholder as written, its row count and example rows, the most frequent first."""
        return [{"text": text, "count": count, "rows": self.rows[text]} for text, count in self.counts.most_common()]

    def advice(self) -> str:
        """The placeholders, their rows, and how to fill them in before uploading."""
        return placeholder_advice(self.counts, self.rows)


def placeholder_advice(counts: Counter[str], rows: dict[str, list[int]]) -> str:
    """Each placeholder with its row count and example rows, then how to fill them in before uploading."""
    named = [text for text, _ in counts.most_common(PLACEHOLDERS_NAMED)]
    each = "; ".join(f"{text} in {_rows(counts[text])} (e.g. row{'s' if len(rows[text]) > 1 else ''} "
                     f"{', '.join(map(str, rows[text]))})" for text in named)
    more = f"; {len(counts) - len(named)} more placeholders" if len(counts) > len(named) else ""
    sed = " ".join(f"-e 's/{text}/{_stand_in(text)}/g'" for text in named)
    return f"{each}{more}. Replace {_and(named)} before uploading, e.g. sed {sed} data.json > data-filled.json"


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _stand_in(placeholder: str) -> str:
    """A value for the sed example: {{ user.name }} → USER_NAME."""
    return placeholder.strip("{} ").replace(".", "_").upper()
