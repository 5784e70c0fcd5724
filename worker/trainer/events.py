"""The trainer's report stream: one JSON object per line, read by the launcher (or printed by the CLI).

Event types (field "type"):
- "started":  device, versions {torch, transformers, peft, bitsandbytes}, total_steps, trainable_params, total_params
- "metric":   step, plus any of epoch, loss, learning_rate, grad_norm, eval_loss, tokens_seen, tokens_per_second,
              elapsed_s, memory_mb
- "log":      message (human progress: "loading model", "tokenising 91 examples" …)
- "checkpoint": step, path (a whole checkpoint folder, see checkpoint.py; the reader may move it away)
- "finished": status ("succeeded" | "cancelled"), final {train_loss, eval_loss, steps, tokens_seen}
- "error":    code (stable), message (actionable), traceback (tail)
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Protocol, TextIO


class MetricSink(Protocol):
    """Where the trainer reports; never a global, the database or Redis."""

    def log(self, step: int, values: dict[str, float]) -> None: ...

    def event(self, type_: str, **data: Any) -> None: ...


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; keep them visible as strings so the divergence is not hidden.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonLinesSink:
    """Writes events as JSON lines to a text stream, flushing each so the reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def log(self, step: int, values: dict[str, float]) -> None:
        self.event("metric", step=step, **values)

    def event(self, type_: str, **data: Any) -> None:
        line = json.dumps({"type": type_, **{k: _clean(v) for k, v in data.items()}})
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class ListSink:
    """Keeps events in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def log(self, step: int, values: dict[str, float]) -> None:
        self.event("metric", step=step, **values)

    def event(self, type_: str, **data: Any) -> None:
        self.events.append({"type": type_, **data})

    def metrics(self) -> list[dict[str, Any]]:
        """The metric events only."""
        return [e for e in self.events if e["type"] == "metric"]
