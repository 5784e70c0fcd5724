"""Read the trainer's JSON-lines event stream on a thread, handing out batches without blocking."""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import IO, Any

log = logging.getLogger(__name__)
_DONE = object()


class EventReader:
    """Lines are parsed as they arrive; a batch is everything available now (or within timeout)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self.done = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                self._queue.put(json.loads(raw))
            except json.JSONDecodeError:
                log.warning("trainer wrote a line that is not an event: %r", raw[:200])
        self._queue.put(_DONE)

    def next_batch(self, timeout: float) -> list[dict[str, Any]]:
        """Wait up to timeout for the first event, then take all that are ready."""
        batch: list[dict[str, Any]] = []
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            while True:
                if item is _DONE:
                    self.done = True
                else:
                    batch.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return batch
