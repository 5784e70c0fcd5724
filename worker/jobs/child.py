"""One child process of a job: argv and environment, spawn, its reports as they arrive, terminate and kill."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from worker.planning.allocator import trainer_env
from worker.planning.reports import PARENT_PID_ENV, NotAReport, Report, parse

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
_DONE = object()
DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def module_argv(module: str, *args: str | Path) -> list[str]:
    """`python -m module args…` with this interpreter: an argv list, never a shell string."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def child_env(base: Mapping[str, str], allocator: str, parent_pid: int | None = None) -> dict[str, str]:
    """The child's environment: the chosen heap allocator preloaded, unbuffered output, and (when supervised)
    the parent's pid, so the child dies with it. Raises AllocatorMissing for an allocator that is not installed."""
    env = {**trainer_env(base, allocator), "PYTHONUNBUFFERED": "1"}
    # A worker running inside a distributed job's pod (a PyTorchJob sets RANK, WORLD_SIZE, …) must not hand that to
    # its trainers: one would take itself for rank 1 of 2 and stay silent. torchrun sets them for its own ranks.
    for key in DISTRIBUTED_ENV:
        env.pop(key, None)
    # Packed batches change shape every step: without expandable segments PyTorch's CUDA caching allocator
    # fragments into blocks of each shape and reserves far more than it uses (ignored on the CPU).
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if parent_pid is not None:
        env[PARENT_PID_ENV] = str(parent_pid)  # it dies with us (worker/trainer/__main__.py: die_with_parent)
    return env


class ChildProcess:
    """A child in a process group of its own; its stdout is parsed into reports on a reader thread."""

    def __init__(self, argv: list[str], env: dict[str, str], stderr: Path | None = None) -> None:
        self.argv, self.env, self.stderr_path = argv, env, stderr
        self._queue: queue.Queue[Any] = queue.Queue()
        self.stream_ended = False
        self.skipped = 0  # lines of its stdout that were not reports
        self.proc: subprocess.Popen | None = None

    def start(self) -> ChildProcess:
        """Spawn it (the stderr file, if any, is opened for it and closed here once it is handed over)."""
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(self.stderr_path.open("wb")) if self.stderr_path else None
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=self.env,
                                         start_new_session=True)
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True, name="child-reports").start()
        return self

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                self._queue.put(parse(raw))
            except NotAReport as exc:  # a library that wrote to our stream; the line is not lost, only logged
                self.skipped += 1
                log.warning("child wrote a line that is not a report (%s): %r", exc, raw[:200])
        self._queue.put(_DONE)

    def next_batch(self, timeout: float) -> list[Report]:
        """Wait up to timeout for the first report, then take all that are ready."""
        batch: list[Report] = []
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            while True:
                if item is _DONE:
                    self.stream_ended = True
                else:
                    batch.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return batch

    def reports(self) -> Iterator[Report]:
        """Every report until the child closes its stdout, then wait for it to exit."""
        while not self.stream_ended:
            yield from self.next_batch(timeout=0.5)
        self.wait()

    def abandon_stream(self) -> None:
        """Stop waiting for the end of its stdout (held open by a process outside its group); reports still queued
        are kept."""
        self.stream_ended = True

    @property
    def exited(self) -> bool:
        """Whether its stream has ended and the process is gone."""
        return self.stream_ended and self.proc is not None and self.proc.poll() is not None

    def wait(self) -> int:
        """Its exit code, once it has exited."""
        assert self.proc is not None
        return self.proc.wait()

    @property
    def returncode(self) -> int | None:
        """The exit code (None while it runs)."""
        return self.proc.poll() if self.proc else None

    def terminate(self) -> None:
        """Ask the whole group to stop (the trainer turns SIGTERM into a clean stop that saves its output)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop the whole group now."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        # The whole group: the child may have children of its own (data workers, torchrun ranks).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stderr_tail(self, limit: int = 4000) -> str:
        """The end of what it wrote to stderr."""
        path = self.stderr_path
        data = path.read_bytes() if path and path.exists() else b""
        return data[-limit:].decode("utf-8", "replace")
