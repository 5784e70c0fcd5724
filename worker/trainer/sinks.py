"""Where the trainer sends its reports (worker.planning.reports): a JSON-lines stream, or a list in memory."""

from __future__ import annotations

import threading
from typing import Any, Protocol, TextIO

from worker.planning.reports import Metric, Report


class ReportSink(Protocol):
    """Where the trainer reports; never a global, the database or Redis."""

    def emit(self, report: Report) -> None: ...


class JsonLinesSink:
    """Writes reports as JSON lines to a text stream, flushing each so the reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # the data-loading threads and the main loop may report at once

    def emit(self, report: Report) -> None:
        line = report.to_json()
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class NullSink:
    """Drops every report: the sink of a DDP rank other than 0, whose reports would repeat rank 0's."""

    def emit(self, report: Report) -> None:
        pass


class ListSink:
    """Keeps reports in memory (tests, benchmarks); `events` holds them as the dicts their JSON lines decode to."""

    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.events: list[dict[str, Any]] = []

    def emit(self, report: Report) -> None:
        self.reports.append(report)
        self.events.append(report.to_dict())

    def metrics(self) -> list[dict[str, Any]]:
        """The metric reports only, as dicts."""
        return [r.to_dict() for r in self.reports if isinstance(r, Metric)]
