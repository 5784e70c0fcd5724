"""Trainer callbacks: metrics to the sink, and a cooperative stop at step boundaries."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from worker.planning.reports import Metric, Started
from worker.trainer import distributed
from worker.trainer.sinks import ReportSink

# Names in the Trainer's logs → names in our Metric reports.
_RENAMES = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm", "eval_loss": "eval_loss",
            "epoch": "epoch"}


def memory_values(device: str) -> dict[str, float]:
    """Memory at a log, in MiB. memory_mb is the peak a run is sized by: on a GPU what tensors held at most since
    training began (the peak is reset then: loading's transient copies are not training's), else the process's
    peak RSS. Beside it host_rss_mb, the process's resident memory now (on a GPU the host side is its own story),
    and on a GPU gpu_reserved_mb, the caching allocator's peak (what the device really had to give) and
    gpu_used_mb, the whole device's memory in use now (the CUDA context and other processes included)."""
    values = {"host_rss_mb": _rss_now_mb()}
    if device != "cuda":
        return {"memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **values}  # Linux: KiB
    free, total = torch.cuda.mem_get_info()
    return {"memory_mb": torch.cuda.max_memory_allocated() / 2**20,
            "gpu_reserved_mb": torch.cuda.max_memory_reserved() / 2**20, "gpu_used_mb": (total - free) / 2**20,
            **values}


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as statm:  # pages: size, resident, …
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class MetricsCallback(TrainerCallback):
    """Reports Started, then one Metric per Trainer log (train or eval), with throughput and memory."""

    def __init__(self, sink: ReportSink, started: dict[str, Any] | None = None) -> None:
        self.sink = sink
        self.started_info = started or {}
        self.started = time.monotonic()
        self.tokens_at_start = 0
        self.previous = (self.started, 0)  # clock and tokens seen at the last train log (or the attempt's start)
        self.last: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Emitted here because only now does the Trainer know the total number of steps.
        self.sink.emit(Started(**self.started_info, total_steps=int(state.max_steps)))
        if self.started_info.get("device") == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.started = time.monotonic()
        # A resumed run starts with the tokens of its earlier attempts; the rates are of this attempt's.
        self.tokens_at_start = int(state.num_input_tokens_seen)
        self.previous = (self.started, self.tokens_at_start)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        values = {ours: float(logs[theirs]) for theirs, ours in _RENAMES.items() if logs and theirs in logs}
        if not values.keys() - {"epoch"}:
            return  # the end-of-training summary and the like carry nothing new
        now = time.monotonic()
        tokens = int(state.num_input_tokens_seen)
        memory = {key: round(mib, 1) for key, mib in memory_values(self.started_info.get("device", "cpu")).items()}
        values |= {"tokens_seen": tokens, "elapsed_s": round(now - self.started, 3), **memory,
                   # Wall clock of the report, so the log-to-browser latency can be measured end to end.
                   "logged_at": round(time.time(), 3)}
        if not any(key.startswith("eval_") for key in logs or {}):
            values |= self._throughput(now, tokens)  # an evaluation trains no tokens: it carries no rate
        self.last |= values
        self.sink.emit(Metric(step=int(state.global_step), **values))

    def _throughput(self, now: float, tokens: int) -> dict[str, float]:
        """Tokens per second since the previous train log (what the speed is now), and since the attempt began."""
        then, tokens_then = self.previous
        self.previous = (now, tokens)
        return {"tokens_per_second": _rate(tokens - tokens_then, now - then),
                "tokens_per_second_avg": _rate(tokens - self.tokens_at_start, now - self.started)}


def _rate(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 1) if seconds > 0 else 0.0


class StopCallback(TrainerCallback):
    """Polls `should_stop` at each step end and asks the Trainer to stop cleanly there."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop
        self.stopped = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Under DDP every rank stops at the same step (a rank that went on would wait for the others for ever).
        if distributed.any_rank(self.stopped or self.should_stop()):
            self.stopped = True
            control.should_training_stop = True
            # A stop skips the evaluation this step (or the epoch's end) would start: a person who pressed Stop
            # waits for the adapter, not for a full pass over the eval set (12 s on the demo run).
            control.should_evaluate = False

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stopped:
            control.should_evaluate = False
