"""The time estimate: a worker's measured speed replaces the datasheet figure, start-up is counted, a range
surrounds the point (wider where nothing was measured); the calibration's own arithmetic."""

from __future__ import annotations

import dataclasses

import pytest

from worker.planning.device_profiles import Throughput, cpu_profile, worker_profile
from worker.planning.estimate import (
    LOAD_S_PER_PARAM,
    MEASURED_RANGE,
    SPREAD_LIMITS,
    STARTUP_S,
    UNMEASURED_RANGE,
    ModelShape,
    estimate,
    flops_per_token,
    startup_seconds,
    time_range,
    tokens_per_second,
)
from worker.planning.spec import RunSpec
from worker.trainer.calibrate import WARMUP_STEPS, speed

SMOLLM2 = ModelShape(576, 1536, 30, 9, 3, 49152, tie_word_embeddings=True)
CPU = dataclasses.replace(cpu_profile(memory_gb=16.0), bf16=True)
MEASURED = dataclasses.replace(CPU, measured={"lora": Throughput(4e10, low=0.9, high=1.2, startup_s=6.0),
                                              "qlora": Throughput(1e10, low=0.8, high=1.5, startup_s=7.0)})


def spec(method: str = "lora", steps: int = 20, batch: int = 4, seq: int = 256) -> RunSpec:
    return RunSpec.model_validate({"method": method, "data": {"path": "x.jsonl", "max_seq_length": seq},
                                   "training": {"max_steps": steps, "per_device_batch_size": batch}})


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_a_measured_speed_replaces_the_datasheet_figure(method: str) -> None:
    run = spec(method)
    assert tokens_per_second(run, SMOLLM2, MEASURED) == MEASURED.measured[method].flops / flops_per_token(run, SMOLLM2)
    assert tokens_per_second(run, SMOLLM2, MEASURED) < tokens_per_second(run, SMOLLM2, CPU)


def test_a_device_measured_for_one_method_only_falls_back_for_the_other() -> None:
    lora_only = dataclasses.replace(CPU, measured={"lora": MEASURED.measured["lora"]})
    assert tokens_per_second(spec("qlora"), SMOLLM2, lora_only) == tokens_per_second(spec("qlora"), SMOLLM2, CPU)
    assert estimate(spec("qlora"), SMOLLM2, lora_only, None).measured is False


def test_startup_is_measured_base_plus_loading_the_weights() -> None:
    params = SMOLLM2.total_params()
    assert startup_seconds(spec("qlora"), SMOLLM2, MEASURED) == pytest.approx(7.0 + params * LOAD_S_PER_PARAM["cpu",
                                                                                                                "qlora"])
    assert startup_seconds(spec("lora"), SMOLLM2, CPU) == pytest.approx(STARTUP_S["cpu"] + params * 2.5e-8)


def test_the_range_widens_with_the_calibration_spread_and_without_a_measurement() -> None:
    assert time_range(100.0, "qlora", MEASURED) == pytest.approx((100 * MEASURED_RANGE[0] * 0.8,
                                                                  100 * MEASURED_RANGE[1] * 1.5))
    steady = dataclasses.replace(CPU, measured={"lora": Throughput(4e10)})
    assert time_range(100.0, "lora", steady) == pytest.approx((100 * MEASURED_RANGE[0], 100 * MEASURED_RANGE[1]))
    erratic = dataclasses.replace(CPU, measured={"lora": Throughput(4e10, low=0.09, high=5.0)})  # a busy machine
    assert time_range(100.0, "lora", erratic) == pytest.approx((100 * MEASURED_RANGE[0] * SPREAD_LIMITS[0],
                                                                100 * MEASURED_RANGE[1] * SPREAD_LIMITS[1]))
    assert time_range(100.0, "lora", CPU) == pytest.approx((100 * UNMEASURED_RANGE[0], 100 * UNMEASURED_RANGE[1]))


def test_the_estimate_is_startup_plus_tokens_over_speed_inside_its_range() -> None:
    run = spec("qlora", steps=50, batch=8, seq=512)
    result = estimate(run, SMOLLM2, MEASURED, None)
    tokens = 50 * 8 * 512
    expected = startup_seconds(run, SMOLLM2, MEASURED) + tokens / tokens_per_second(run, SMOLLM2, MEASURED)
    assert result.measured and result.tokens == tokens
    assert result.time_s == pytest.approx(expected, abs=0.1)
    assert result.time_low_s < result.time_s < result.time_high_s
    assert result.startup_s == pytest.approx(startup_seconds(run, SMOLLM2, MEASURED), abs=0.1)
    assert result.device["measured"]["qlora"]["flops"] == 1e10  # the API shows what the estimate rests on


def test_unknown_length_has_no_time_nor_range() -> None:
    result = estimate(spec(steps=-1), SMOLLM2, MEASURED, None)
    assert result.time_s is None and result.time_low_s is None and result.time_high_s is None


def test_a_worker_announcing_its_calibration_gets_a_measured_profile() -> None:
    announced = {"hostname": "celery@a", "kind": "cpu", "name": "2-core CPU", "memory_gb": 23.4, "bf16": True,
                 "calibration": {"lora": {"flops": 2.3e10, "low": 0.83, "high": 1.87, "startup_s": 11.6},
                                 "qlora": {"flops": -1}, "junk": "x"}}
    profile = worker_profile(announced)
    assert profile.measured == {"lora": Throughput(2.3e10, 0.83, 1.87, 11.6)}
    assert worker_profile({**announced, "calibration": None}).measured == {}
    assert worker_profile({"hostname": "old", "kind": "cpu"}).measured == {}  # a worker from before calibration


def test_calibration_speed_is_the_median_step_after_the_warm_up() -> None:
    # 512 tokens a step; after the warm-up, steps of 1 s, 2 s and 1 s (the slow one: another process on the cores).
    elapsed = {1: 5.0, 2: 6.0, 3: 7.0, 4: 9.0, 5: 10.0}
    points = [{"step": s, "loss": 1.0, "tokens_seen": 512 * s, "elapsed_s": t} for s, t in elapsed.items()]
    points.insert(2, {"step": 2, "eval_loss": 1.0, "tokens_seen": 1024, "elapsed_s": 6.5})  # not a train step
    assert WARMUP_STEPS == 2
    measured = speed(points, per_token=1e6)
    assert measured == {"flops": pytest.approx(512e6), "low": pytest.approx(1.0), "high": pytest.approx(2.0)}
    with pytest.raises(RuntimeError, match="too few steps"):
        speed(points[:3], per_token=1e6)
