"""Run page charts, clock and timeline, the runs list's sparklines and ETAs, the compare page and its errors."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from app.core.db import utcnow
from app.core.models import MetricPoint, Run, RunStatus, TimelineEntry
from app.pages.run_figures import (
    downsample_minmax,
    duration,
    eta_seconds,
    flatten,
    run_clock,
    sparkline,
    spec_diff,
    step_rate,
)

CHARTS = ("loss-chart", "lr-chart", "grad-norm-chart", "throughput-chart", "memory-chart")


def _run(resources, ids: dict, n: int = 5, spec: dict | None = None, **fields) -> int:
    """A run with n train-loss points and one eval point at the end, stored directly."""
    values = {"name": "seeded", "status": RunStatus.succeeded, "method": "lora",
              "spec": spec or {"lora": {"r": 16, "alpha": 32}, "training": {"learning_rate": 0.0002}},
              "dataset_id": ids["dataset_id"], "base_model_id": ids["model_id"], **fields}
    with resources.session_factory() as session:
        run = Run(**values)
        session.add(run)
        session.flush()
        for step in range(1, n + 1):
            session.add(MetricPoint(run_id=run.id, seq=step, step=step,
                                    values={"loss": 2.0 / step, "learning_rate": 1e-4, "tokens_seen": 100 * step}))
        session.add(MetricPoint(run_id=run.id, seq=n + 1, step=n, values={"eval_loss": 1.0}))
        session.add(TimelineEntry(run_id=run.id, kind="queued", message="Queued: lora on m.", data={}))
        session.commit()
        return run.id


def test_run_page_has_every_chart_with_its_controls(client, resources, ids) -> None:
    page = client.get(f"/runs/{_run(resources, ids)}").text
    for chart in CHARTS:
        assert f'id="{chart}"' in page
        for control in ("smoothing", "log", "x", "reset", "csv", "png"):
            assert f'id="{chart}-{control}"' in page
    assert re.search(r'id="loss-chart"[^>]*data-points="0"', page)
    assert '<option value="tokens">' in page and '<option value="time">' in page
    assert "/static/js/run_live.js" in page and "/static/vendor/uplot/uPlot.iife.min.js" in page


def test_run_page_renders_the_timeline(client, resources, ids) -> None:
    run_id = _run(resources, ids)
    page = client.get(f"/runs/{run_id}").text
    assert 'id="run-timeline"' in page and 'data-kind="queued"' in page and "Queued: lora on m." in page
    assert f'data-timeline-url="/runs/{run_id}/timeline"' in page
    partial = client.get(f"/runs/{run_id}/timeline")
    assert partial.status_code == 200 and "Queued: lora on m." in partial.text and "<html" not in partial.text


def test_failed_run_shows_message_advice_and_traceback(client, resources, ids) -> None:
    run_id = _run(resources, ids, status=RunStatus.failed, error_code="trainer_crashed",
                  error_message="CUDA out of memory.", error_traceback="Traceback: OutOfMemoryError")
    page = client.get(f"/runs/{run_id}").text
    assert 'id="run-error"' in page and "CUDA out of memory." in page
    assert 'id="run-error-advice"' in page and "try QLoRA" in page
    assert "Traceback: OutOfMemoryError" in page


def test_runs_list_has_a_sparkline_and_an_eta(client, resources, ids) -> None:
    done = _run(resources, ids, n=30)
    running = _run(resources, ids, n=10, status=RunStatus.running, current_step=10, total_steps=40,
                   started_at=utcnow() - timedelta(seconds=100))
    table = client.get("/runs/table").text
    assert f'id="sparkline-{done}" data-points="30"' in table and "<polyline" in table
    assert f'id="sparkline-{running}"' in table
    assert re.search(r'data-eta="5m 0\ds"', table), "300 s left at 10 s a step"


def test_compare_two_runs_shows_spec_diff_and_both_series(client, resources, ids) -> None:
    first = _run(resources, ids, n=4)
    second = _run(resources, ids, n=6, spec={"lora": {"r": 32, "alpha": 32}, "training": {"learning_rate": 0.0002}})
    response = client.get(f"/runs/compare?ids={first}&ids={second}")
    assert response.status_code == 200
    page = response.text
    assert 'id="compare-chart"' in page and 'id="compare-eval-chart"' in page
    assert re.search(r'<tr class="differs" data-key="lora.r">\s*<td><code>lora.r</code></td>\s*'
                     r'<td><code>16</code></td><td><code>32</code></td>', page)
    assert 'class="same" data-key="lora.alpha"' in page and 'id="show-all-keys"' in page
    data = json.loads(re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', page, re.S)[1])
    assert [run["id"] for run in data] == [first, second]
    assert [len(run["points"]) for run in data] == [5, 7]
    assert data[1]["points"][-1] == {"step": 6, "eval_loss": 1.0}
    assert data[0]["color"] == first % 8
    assert f'id="compare-pick-{first}" checked' in page


@pytest.mark.parametrize(("query", "status", "words"), [
    ("ids=987654&ids=1", 404, "There is no run #987654"),
    ("ids=abc", 422, "run ids are whole numbers"),
])
def test_compare_with_bad_ids_is_a_clear_page(client, resources, ids, query: str, status: int, words: str) -> None:
    _run(resources, ids)
    response = client.get(f"/runs/compare?{query}")
    assert response.status_code == status
    assert 'id="compare-problem"' in response.text and words in response.text
    assert 'id="compare-form"' in response.text  # the way forward is on the same page


def test_compare_with_one_run_asks_for_two(client, resources, ids) -> None:
    run_id = _run(resources, ids)
    page = client.get(f"/runs/compare?ids={run_id}").text
    assert 'id="compare-too-few"' in page and "at least two runs" in page
    assert 'id="compare-chart"' not in page
    assert 'id="compare-form"' in client.get("/runs/compare").text


def test_downsampling_keeps_the_spike_within_the_budget() -> None:
    values = [1.0] * 100_000
    values[54_321] = 40.0
    kept = downsample_minmax(values, 1500)
    assert len(kept) <= 1500 and 54_321 in kept and kept[0] == 0 and kept[-1] == 99_999
    assert kept == sorted(kept)


def test_sparkline_eta_and_spec_diff_helpers() -> None:
    assert sparkline([1.0]) is None
    line = sparkline([3.0, 2.0, 1.0])
    assert line is not None and line.count == 3 and line.points.startswith("2.0,2.0")
    run = Run(status="running", total_steps=100, current_step=25, started_at=utcnow() - timedelta(seconds=50))
    assert eta_seconds(run) == pytest.approx(150, abs=2)
    assert eta_seconds(Run(status="succeeded", total_steps=10, current_step=10)) is None
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
    rows = spec_diff([{"lora": {"r": 8}, "x": [1]}, {"lora": {"r": 16}}])
    assert [(r.key, r.values, r.differs) for r in rows] == [("lora.r", ["8", "16"], True), ("x", ["1", "—"], True)]


def test_run_details_partial_shows_device_and_versions(client, resources, ids) -> None:
    run_id = _run(resources, ids, device="cpu", worker="w1", attempts=1, versions={"peft": "0.21.2"})
    assert f'data-details-url="/runs/{run_id}/details"' in client.get(f"/runs/{run_id}").text
    partial = client.get(f"/runs/{run_id}/details")
    assert partial.status_code == 200 and "<html" not in partial.text
    assert "cpu" in partial.text and "w1" in partial.text and "0.21.2" in partial.text


def test_huge_ids_in_page_urls_are_a_clear_4xx(client, ids) -> None:
    huge = 2**63
    for path in (f"/runs/new?clone={huge}", f"/datasets/{ids['dataset_id']}?analysis={huge}",
                 f"/datasets/{ids['dataset_id']}/analysis/{huge}", f"/runs/{huge}"):
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)


def _timed_run(resources, ids: dict, seconds_per_step: float, steps: int = 10, **fields) -> int:
    """A running run of 100 steps whose train logs (one per step, an evaluation at step 5) took seconds_per_step."""
    values = {"name": "timed", "status": RunStatus.running, "method": "lora", "spec": {}, "total_steps": 100,
              "current_step": steps, "started_at": utcnow() - timedelta(seconds=600), "dataset_id": ids["dataset_id"],
              "base_model_id": ids["model_id"], **fields}
    with resources.session_factory() as session:
        run = Run(**values)
        session.add(run)
        session.flush()
        for step in range(1, steps + 1):
            session.add(MetricPoint(run_id=run.id, seq=step, step=step,
                                    values={"loss": 1.0, "elapsed_s": 30.0 + step * seconds_per_step}))
        session.add(MetricPoint(run_id=run.id, seq=steps + 1, step=5, values={"eval_loss": 1.0, "elapsed_s": 999.0}))
        run.metric_seq = steps + 1
        session.commit()
        return run.id


def test_running_run_page_shows_elapsed_and_an_eta_at_the_recent_pace(client, resources, ids) -> None:
    run_id = _timed_run(resources, ids, seconds_per_step=2.0)
    page = client.get(f"/runs/{run_id}").text
    assert f'data-clock-url="/runs/{run_id}/clock"' in page and "/static/js/run_live.js" in page
    # Ten minutes since it was claimed (loading included), but 2 s a step lately: 90 steps left → 3 minutes.
    assert re.search(r'data-running="true" data-elapsed-s="60\d\.\d" data-eta-s="180\.0"', page)
    assert re.search(r'id="run-elapsed">10m 0\ds<', page)
    assert 'id="run-eta" title="Time left at the recent pace">3m 00s<' in page
    partial = client.get(f"/runs/{run_id}/clock")
    assert partial.status_code == 200 and "<html" not in partial.text and 'id="run-eta"' in partial.text


def test_ended_run_page_shows_its_duration_and_no_eta(client, resources, ids) -> None:
    start = utcnow() - timedelta(hours=1)
    run_id = _run(resources, ids, started_at=start, finished_at=start + timedelta(seconds=312))
    page = client.get(f"/runs/{run_id}").text
    assert 'data-running="false" data-elapsed-s="312.0"' in page and 'id="run-elapsed">5m 12s<' in page
    assert 'id="run-eta"' not in page
    queued = _run(resources, ids, status=RunStatus.queued)
    assert 'data-clock' not in client.get(f"/runs/{queued}/clock").text  # nothing to time before it starts


def test_runs_list_eta_is_the_run_pages_eta(client, resources, ids) -> None:
    run_id = _timed_run(resources, ids, seconds_per_step=1.0)
    assert re.search(rf'data-run-id="{run_id}".*?data-eta="1m 30s"', client.get("/runs/table").text, re.S)


def test_the_step_rate_is_recent_and_of_the_newest_attempt() -> None:
    def point(step: int, elapsed: float, **values: float) -> MetricPoint:
        return MetricPoint(step=step, values={"elapsed_s": elapsed, **values})

    slow_start = [point(1, 50.0)] + [point(s, 50.0 + s) for s in range(2, 30)]
    assert step_rate(slow_start) == pytest.approx(1.0)  # the last ten logs, not the slow first step
    resumed = [point(s, 10.0 * s) for s in range(1, 20)] + [point(15, 5.0), point(16, 5.5), point(17, 6.0)]
    assert step_rate(resumed) == pytest.approx(2.0)  # the trainer's clock started again: only the new attempt
    assert step_rate([point(3, 4.0), point(3, 9.0, eval_loss=1.0)]) is None  # one train log tells no rate
    run = Run(status="running", total_steps=100, current_step=17, started_at=utcnow() - timedelta(seconds=50))
    assert eta_seconds(run, resumed) == pytest.approx(41.5)
    clock = run_clock(Run(status="cancelled", started_at=utcnow(), finished_at=utcnow() + timedelta(seconds=45)))
    assert (clock.running, clock.elapsed, clock.eta) == (False, "45s", "—")
    # The page's script formats the ticking clock the same way (tests/js/run_clock.test.mjs).
    assert [duration(s) for s in (45, 200, 7500, 0)] == ["45s", "3m 20s", "2h 05m", "0s"]


def test_throughput_chart_has_a_figure_beside_its_title(client, resources, ids) -> None:
    page = client.get(f"/runs/{_run(resources, ids)}").text
    assert 'id="throughput-chart-figure"' in page and "Over each logging interval" in page
