"""Dynamic batching: requests received wait here, and each batch takes the oldest one's base and up to max_batch
requests for that base, waiting a few milliseconds for more when it is not full."""

from __future__ import annotations

import threading
import time

from app.core.generation.protocol import BaseRef
from worker.generation.engine import Arrival

WAIT_S = 0.005  # how long a batch that is not full waits for more requests


class Batcher:
    """Received requests in arrival order; thread-safe (a reader thread puts, the generation loop takes)."""

    def __init__(self, max_batch: int, wait_s: float = WAIT_S) -> None:
        self.max_batch, self.wait_s = max_batch, wait_s
        self.pending: list[Arrival] = []
        self.changed = threading.Condition()

    def __len__(self) -> int:
        with self.changed:
            return len(self.pending)

    def put(self, arrivals: list[Arrival], front: bool = False) -> None:
        """Add requests (at the front: ones a batch had to leave for the next)."""
        with self.changed:
            self.pending = [*arrivals, *self.pending] if front else [*self.pending, *arrivals]
            self.changed.notify_all()

    def next_batch(self, timeout: float) -> tuple[BaseRef, list[Arrival]] | None:
        """The next batch (its base and requests), or None when nothing came within timeout."""
        with self.changed:
            if not self.pending and not self.changed.wait_for(lambda: bool(self.pending), timeout):
                return None
            base = self.pending[0].request.base
            deadline = time.monotonic() + self.wait_s
            while self._count(base) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(left)
            batch = [a for a in self.pending if a.request.base == base][:self.max_batch]
            taken = {id(a) for a in batch}
            self.pending = [a for a in self.pending if id(a) not in taken]
            return base, batch

    def drain(self) -> list[Arrival]:
        """Every request still waiting, removed (the service is stopping)."""
        with self.changed:
            drained, self.pending = self.pending, []
            return drained

    def _count(self, base: BaseRef) -> int:
        return sum(a.request.base == base for a in self.pending)
