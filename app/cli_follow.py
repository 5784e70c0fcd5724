"""`--follow`: a run's live progress (step/total, loss, tokens/s, ETA) from its SSE stream, resumed with
Last-Event-ID when the connection drops, until the run reaches an end state."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
import typer

from app.studio_client import StudioClient

ENDS = ("succeeded", "failed", "cancelled")
RETRY_S = 2.0
GIVE_UP_AFTER = 30  # reconnects in a row without an answer (about a minute): the studio is gone, not restarting
# The studio sends a keep-alive every 15 s; a minute of silence is a dead connection.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)
BAR = 20


@dataclass
class Progress:
    """What the stream has said of a run so far."""

    status: str = "queued"
    step: int = 0
    total: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    error: str | None = None
    # (elapsed_s, step) of this attempt's points, for the rate; a resumed attempt restarts its clock.
    clock: list[tuple[float, int]] = field(default_factory=list)

    def apply(self, event: str, data: dict[str, Any]) -> None:
        """Take one SSE event (`metric` or `status`, see app/api/events.py)."""
        if event == "status":
            self.status, self.total = data["status"], data.get("total_steps") or self.total
            self.step = max(self.step, data.get("current_step") or 0)
            self.error = data.get("error_code") and f"{data['error_code']}: {data.get('error_message')}"
        elif event == "metric":
            # History comes before the status event: a run with points has started, whatever the default says.
            self.status = "running" if self.status == "queued" else self.status
            self.step = data["step"]
            self.loss = data.get("loss", self.loss)
            self.tokens_per_s = data.get("tokens_per_second", self.tokens_per_s)
            if isinstance(data.get("elapsed_s"), int | float):
                if self.clock and data["elapsed_s"] < self.clock[-1][0]:
                    self.clock = []
                self.clock = [*self.clock[-9:], (data["elapsed_s"], data["step"])]

    def eta_s(self) -> float | None:
        """Seconds left at the recent pace; None before there is a pace or a total."""
        if not self.total or not self.clock:
            return None
        (t0, s0), (t1, s1) = (self.clock[0], self.clock[-1]) if len(self.clock) > 1 else ((0.0, 0), self.clock[0])
        return (t1 - t0) / (s1 - s0) * max(self.total - self.step, 0) if s1 > s0 else None

    def line(self) -> str:
        """One line for a person: the state, or step/total with a bar, loss, tokens/s and ETA."""
        if self.status == "queued":
            return "queued: waiting for a worker"
        if self.status != "running":
            return f"{self.status} at step {self.step}" + (f"/{self.total}" if self.total else "") + \
                (f" ({self.error})" if self.error else "")
        parts = [f"step {self.step}/{self.total}" if self.total else f"step {self.step}"]
        if self.total:
            done = min(BAR, BAR * self.step // self.total)
            parts.append("[" + "#" * done + "." * (BAR - done) + "]")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}" if isinstance(self.loss, float | int) else f"loss {self.loss}")
        if isinstance(self.tokens_per_s, float | int):
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """(event, id, data) of each event in an SSE text stream; comments and `retry:` are skipped."""
    event, event_id, data = "message", None, []
    for line in lines:
        if not line:
            if data:
                yield event, event_id, json.loads("\n".join(data))
            event, event_id, data = "message", None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class Display:
    """A progress line rewritten in place on a terminal; one line per change elsewhere (logs, pipes)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty, self.last, self.width = self.out.isatty(), "", 0

    def show(self, line: str) -> None:
        """Show the current line, unless it says nothing new."""
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.out.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def note(self, message: str) -> None:
        """A message on stderr, below the progress line."""
        self.end()
        typer.echo(message, err=True)

    def end(self) -> None:
        """Leave the progress line where it is."""
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
            self.width = 0


def follow(client: StudioClient, run_id: int, display: Display | None = None) -> Progress:
    """Show a run's progress until it ends (reconnecting where the stream drops); its final Progress."""
    stream = RunFollower(client, run_id, display or Display())
    misses = 0
    while stream.progress.status not in ENDS:
        try:
            stream.read()
            misses = 0
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            misses += 1
            if misses > GIVE_UP_AFTER:
                stream.display.note(f"error: lost the studio at {client.server} ({exc}); the run goes on without "
                                    f"you: lorastudio runs show {run_id}")
                raise typer.Exit(1) from None
            if misses == 1:
                stream.display.note(f"connection lost ({type(exc).__name__}); reconnecting…")
        if stream.progress.status not in ENDS:
            time.sleep(RETRY_S)
    stream.display.end()
    return stream.progress


class RunFollower:
    """One run's event stream, read connection after connection from the last event id seen."""

    def __init__(self, client: StudioClient, run_id: int, display: Display) -> None:
        self.client, self.run_id, self.display = client, run_id, display
        self.progress, self.last_id, self.asked_total = Progress(), None, False

    def read(self) -> None:
        """Read one connection's events until the studio closes it (the run ended) or it breaks."""
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        with self.client.stream(f"/api/runs/{self.run_id}/events", headers, STREAM_TIMEOUT) as response:
            for event, event_id, data in sse_events(response.iter_lines()):
                self.last_id = event_id or self.last_id
                self.progress.apply(event, data)
                if event == "metric" and self.progress.total is None and not self.asked_total:
                    # Status events carry the total, but a short run may send its first one only at the end.
                    self.asked_total = True
                    self.progress.total = self.client.get(f"/api/runs/{self.run_id}")["total_steps"]
                self.display.show(self.progress.line())
