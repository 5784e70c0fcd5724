"""The divergence guard: NaN/inf or exploding losses end the run as `diverged`, with no adapter saved."""

from __future__ import annotations

from pathlib import Path

import pytest

import worker.trainer.loop as loop
from worker.planning.spec import RunSpec
from worker.trainer.errors import TrainerError
from worker.trainer.guard import DivergenceGuard
from worker.trainer.sinks import ListSink


@pytest.mark.parametrize(("logs", "tripped"), [
    ({"loss": float("nan")}, "loss became nan"),
    ({"loss": 2.0, "grad_norm": float("inf")}, "grad_norm became inf"),
    ({"eval_loss": float("-inf")}, "eval_loss became -inf"),
    ({"loss": 9.0}, "exploded to 9"),
    ({"loss": 7.9}, None),  # under 4× the first loss of 2.0
    ({"loss": 0.01}, None),  # falling is the point
])
def test_guard_trips_on_non_finite_and_exploding_values(logs: dict, tripped: str | None) -> None:
    guard = DivergenceGuard(loss_factor=4.0)
    assert guard.check(1, {"loss": 2.0}) is None  # the first logged loss is the reference
    reason = guard.check(2, logs)
    assert (reason is None) if tripped is None else (tripped in reason), reason


def test_guard_without_a_factor_still_catches_nan() -> None:
    guard = DivergenceGuard(loss_factor=None)
    assert guard.check(1, {"loss": 2.0}) is None and guard.check(2, {"loss": 1e6}) is None
    assert "nan" in guard.check(3, {"loss": float("nan")})


def test_absurd_learning_rate_on_the_real_model_fails_as_diverged(demo_model_dir: Path, chat_data: Path,
                                                                     tmp_path: Path) -> None:
    # The tiny random model cannot show this: its loss starts near log(vocab) and an absurd rate only flattens
    # it. A pretrained model starts low, and learning rate 1.0 throws it far above where it began.
    spec = RunSpec.model_validate({
        "model": {"base_model": str(demo_model_dir)},
        "data": {"path": str(chat_data), "max_seq_length": 64},
        "training": {"learning_rate": 1.0, "max_steps": 20, "per_device_batch_size": 4, "warmup_ratio": 0.0,
                     "lr_scheduler": "constant", "seed": 0},
    })
    sink = ListSink()
    with pytest.raises(TrainerError) as failure:
        loop.train(spec, tmp_path, sink)
    assert failure.value.code == "diverged"
    assert "diverged" in failure.value.message and "step" in failure.value.message
    losses = [m["loss"] for m in sink.metrics() if "loss" in m]
    assert len(losses) < 20, "the guard should stop the run early, not after the last step"
    assert losses[-1] > 4 * losses[0], losses
    assert not (tmp_path / "adapter").exists()
    assert not any(e["type"] == "finished" for e in sink.events)


def test_a_healthy_run_is_not_stopped(make_spec, tmp_path: Path) -> None:
    result = loop.train(make_spec(training={"max_steps": 10}), tmp_path, ListSink())
    assert result.status == "succeeded" and result.steps == 10
