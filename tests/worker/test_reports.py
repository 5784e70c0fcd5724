"""The report vocabulary: what the trainer writes is what every reader parses, versioned and strict."""

from __future__ import annotations

import json
import math

import pytest

from worker.planning.reports import Checkpoint, Finished, Log, Metric, NotAReport, Result, Started, parse


@pytest.mark.parametrize("report", [
    Started(device="cpu", versions={"torch": "2"}, allocator="tcmalloc", total_steps=3, trainable_params=1,
            total_params=9),
    Metric(step=2, loss=1.25, tokens_seen=40),
    Log(message="loading model", at=1.5),
    Checkpoint(step=2, path="/tmp/step-000002"),
    Finished(status="cancelled"),
    Result(data={"rows": 3}),
])
def test_every_report_survives_its_line(report) -> None:  # noqa: ANN001
    assert parse(report.to_json()) == report


def test_a_diverging_loss_travels_as_a_string_and_comes_back_a_float() -> None:
    line = Metric(step=1, loss=float("nan"), grad_norm=float("inf")).to_json()
    assert json.loads(line)["loss"] == "NaN"
    back = parse(line)
    assert math.isnan(back.loss) and back.grad_norm == float("inf")
    assert back.values() == {"loss": "NaN", "grad_norm": "Infinity"}  # JSON-safe for the database


def test_metric_lines_carry_only_what_was_measured() -> None:
    assert json.loads(Metric(step=4, loss=0.5).to_json()) == {"v": 1, "type": "metric", "step": 4, "loss": 0.5}


@pytest.mark.parametrize(("line", "why"), [
    ('{"v": 2, "type": "log", "message": "x"}', "version 2"),
    ('{"type": "log", "message": "x"}', "version None"),
    ('{"v": 1, "type": "telemetry"}', "telemetry"),
    ('{"v": 1, "type": "metric", "step": 1, "perplexity": 3}', "perplexity"),
    ('{"v": 1, "type": "metric"}', "step"),
    ("progress 50%", "not JSON"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_line_that_is_not_a_report_of_this_version_is_refused_with_the_reason(line: str, why: str) -> None:
    with pytest.raises(NotAReport, match=why):
        parse(line)
