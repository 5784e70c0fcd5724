"""MetricsCallback's throughput: the rate over each train-log interval, and this attempt's average beside it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from worker.trainer import callbacks
from worker.trainer.callbacks import MetricsCallback
from worker.trainer.sinks import ListSink


class Clock:
    """Stands in for the `time` module: the test moves the monotonic clock by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(callbacks, "time", fake)
    return fake


def _attempt(clock: Clock, tokens_at_start: int = 0) -> tuple[MetricsCallback, ListSink, SimpleNamespace]:
    sink = ListSink()
    callback = MetricsCallback(sink, started={"device": "cpu"})
    state = SimpleNamespace(max_steps=100, global_step=0, num_input_tokens_seen=tokens_at_start)
    callback.on_train_begin(None, state, None)
    return callback, sink, state


def _log(callback: MetricsCallback, clock: Clock, state: SimpleNamespace, seconds: float, tokens: int,
         logs: dict, steps: int = 1) -> None:
    clock.now += seconds
    state.num_input_tokens_seen += tokens
    state.global_step += steps
    callback.on_log(None, state, None, logs=logs)


def test_tokens_per_second_is_the_rate_of_each_interval_with_the_average_beside_it(clock: Clock) -> None:
    callback, sink, state = _attempt(clock)
    _log(callback, clock, state, 10, 450, {"loss": 2.0})   # a slow first interval (warm-up): 45/s
    _log(callback, clock, state, 2, 460, {"loss": 1.9})    # then 230/s
    _log(callback, clock, state, 2, 460, {"loss": 1.8})
    rates = [(m["tokens_per_second"], m["tokens_per_second_avg"]) for m in sink.metrics()]
    # The average since the start (what the chart used to show) lags far behind the speed of the moment.
    assert rates == [(45.0, 45.0), (230.0, 75.8), (230.0, 97.9)]


def test_an_evaluation_neither_carries_a_rate_nor_restarts_the_interval(clock: Clock) -> None:
    callback, sink, state = _attempt(clock)
    _log(callback, clock, state, 4, 400, {"loss": 2.0})
    _log(callback, clock, state, 1, 0, {"eval_loss": 1.5, "eval_runtime": 1.0}, steps=0)
    _log(callback, clock, state, 1, 100, {"loss": 1.9})
    train, evaluation, after = sink.metrics()
    assert "tokens_per_second" not in evaluation and "tokens_per_second_avg" not in evaluation
    assert evaluation["eval_loss"] == 1.5 and evaluation["tokens_seen"] == 400
    # Between the two train logs: 100 tokens in 2 s, the evaluation's second included.
    assert after["tokens_per_second"] == 50.0 and after["tokens_per_second_avg"] == 83.3


def test_a_resumed_attempt_counts_only_its_own_tokens(clock: Clock) -> None:
    callback, sink, state = _attempt(clock, tokens_at_start=9000)
    _log(callback, clock, state, 5, 1000, {"loss": 1.0})
    (first,) = sink.metrics()
    assert first["tokens_seen"] == 10000
    assert first["tokens_per_second"] == 200.0 and first["tokens_per_second_avg"] == 200.0


def test_the_end_of_training_summary_is_not_a_point_and_keeps_the_interval(clock: Clock) -> None:
    callback, sink, state = _attempt(clock)
    _log(callback, clock, state, 2, 200, {"loss": 1.0})
    _log(callback, clock, state, 3, 0, {"train_runtime": 5.0, "train_loss": 1.0, "epoch": 1.0}, steps=0)
    _log(callback, clock, state, 1, 300, {"loss": 0.9})
    assert [m["tokens_per_second"] for m in sink.metrics()] == [100.0, 75.0]
