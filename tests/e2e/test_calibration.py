"""A training worker measures its own speed at its start and announces it with its device, so estimates for it use
that; a worker of short jobs alone is no training device and announces nothing. Real workers, Redis, trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import workers
from tests.support.fleet import make_fleet, wait_for
from worker.planning.device_profiles import worker_profile
from worker.planning.estimate import ModelShape, estimate, flops_per_token
from worker.planning.spec import RunSpec

pytestmark = pytest.mark.e2e


def test_a_training_worker_announces_its_measured_speed(settings, tmp_path: Path) -> None:
    fleet = make_fleet(settings, tmp_path / "fleet", LORASTUDIO_CALIBRATE="true")
    try:
        fleet.start("trainer"), fleet.start("quick", lanes="short")
        fleet.wait_ready("trainer", "quick")
        live = lambda: workers.live_workers(fleet.resources.redis)  # noqa: E731
        wait_for(lambda: any("calibration" in w for w in live()), 400, lambda: f"{live()}\n{fleet.logs()}", every=2)
        [announced] = live()  # the short worker is not among the training devices
        assert announced["hostname"].startswith("trainer@"), announced
        profile = worker_profile(announced)
        assert set(profile.measured) == {"lora", "qlora"}, announced["calibration"]
        for speed in profile.measured.values():
            assert speed.flops > 1e8 and speed.low <= 1.0 <= speed.high and speed.startup_s > 0
        shape = ModelShape(576, 1536, 30, 9, 3, 49152, tie_word_embeddings=True)
        run = RunSpec.model_validate({"method": "qlora", "data": {"path": "x", "max_seq_length": 256},
                                      "training": {"max_steps": 10}})
        result = estimate(run, shape, profile, None)
        assert result.measured
        assert result.tokens_per_second == pytest.approx(profile.measured["qlora"].flops / flops_per_token(run, shape),
                                                         rel=0.01)
    finally:
        fleet.stop()
