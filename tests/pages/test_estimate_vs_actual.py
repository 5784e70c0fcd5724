"""A run's "estimated X, took Y" line (frontend/templates/runs/_estimate_vs_actual.html)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from app.pages.templating import templates

STARTED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ESTIMATE = {"time_s": 120.0, "low_s": 84.0, "high_s": 180.0, "startup_s": 12.0, "tokens": 5000,
            "tokens_per_second": 46.3, "device": "2-core CPU", "worker": "celery@a", "measured": True}


def line(**run: object) -> str:
    fields = {"estimate": ESTIMATE, "status": "succeeded", "started_at": STARTED, "finished_at": None} | run
    html = templates.env.get_template("runs/_estimate_vs_actual.html").render(run=SimpleNamespace(**fields))
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def test_a_finished_run_shows_the_estimate_beside_its_time() -> None:
    text = line(finished_at=STARTED + timedelta(seconds=150))
    assert text.startswith("Time estimated ~2 min (84 s–3 min), took 2 min")
    assert "(1.2× the estimate)" in text and "2-core CPU" in text and "not measured" not in text


def test_a_running_run_shows_the_estimate_alone_and_an_unmeasured_one_says_so() -> None:
    text = line(status="running", estimate=ESTIMATE | {"measured": False})
    assert "took" not in text and "estimated ~2 min" in text and "speed not measured" in text
    cancelled = line(status="cancelled", finished_at=STARTED + timedelta(seconds=30))
    assert "took 30 s" in cancelled and "(0.2× the estimate; cancelled)" in cancelled


def test_a_run_without_an_estimate_shows_nothing() -> None:
    assert line(estimate=None) == ""


def test_the_designer_shows_the_range_and_what_the_time_rests_on() -> None:
    import dataclasses

    from worker.planning.device_profiles import Throughput, cpu_profile
    from worker.planning.estimate import ModelShape, estimate
    from worker.planning.spec import RunSpec

    shape = ModelShape(576, 1536, 30, 9, 3, 49152, tie_word_embeddings=True)
    run = RunSpec.model_validate({"method": "qlora", "data": {"path": "x", "max_seq_length": 512},
                                  "training": {"max_steps": 40, "per_device_batch_size": 8}})
    cpu = cpu_profile(memory_gb=16.0)
    measured = dataclasses.replace(cpu, name="2-core CPU", measured={"qlora": Throughput(1e11, 0.9, 1.1, 9.0)})
    template = templates.env.get_template("runs/_estimate.html")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", template.render(estimate=estimate(run, shape, measured, None))))
    assert re.search(r"Time ?~\d+ min \(\d+ min–\d+ min\)", text), text
    assert "as measured on this worker, plus ~" in text and "2-core CPU measured at its start" in text
    guess = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", template.render(estimate=estimate(run, shape, cpu, None))))
    assert "no worker has measured its speed" in guess and "as measured on this worker" not in guess
