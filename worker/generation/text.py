"""A sequence's text as it is generated: token ids decoded incrementally (whole characters only), and stop strings
found, with text that could still become one held back (no torch)."""

from __future__ import annotations

from typing import Any

PROMPT_CONTEXT = 5  # prompt tokens decoded before the first new one, so a leading space is not lost


class Detokenizer:
    """New text per token: decodes a short window of ids so far, and emits only once no byte of a character is
    missing (a multi-byte character split over tokens decodes to U+FFFD until its last byte arrives)."""

    def __init__(self, tokenizer: Any, prompt_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-PROMPT_CONTEXT:])
        self.prefix = 0  # where the decoded window starts
        self.read = len(self.ids)  # ids up to here have been turned into text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """The text token_id completes (empty while a character is still partial)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """The text of the ids not yet turned into text, partial characters and all (the sequence has ended)."""
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return after[len(before):] if after.startswith(before) else ""


class StopText:
    """The text of one sequence against its stop strings: what may be sent, and whether a stop string ended it."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""  # everything decoded, up to a stop string once one is found
        self.sent = 0  # characters of text already handed out
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Add new text; returns what can be sent now (text that cannot be the start of a stop string)."""
        if self.stopped or not delta:
            return ""
        self.text += delta
        found = [i for i in (self.text.find(s, self.sent) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            self.text = self.text[:min(found)]
            return self._take(len(self.text))
        return self._take(len(self.text) - self._held())

    def flush(self) -> str:
        """What is still held back (the sequence ended otherwise, so it is plain text after all)."""
        return self._take(len(self.text))

    def _held(self) -> int:
        """Length of the longest tail of the unsent text that is the start of a stop string."""
        pending = self.text[self.sent:]
        for size in range(min(len(pending), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
            tail = pending[-size:]
            if any(s.startswith(tail) for s in self.stops):
                return size
        return 0

    def _take(self, upto: int) -> str:
        out = self.text[self.sent:upto]
        self.sent = max(self.sent, upto)
        return out
