"""The report's numbers: intervals, the paired difference, flips, identical outputs."""

from __future__ import annotations

import random

import pytest

from worker.evaluation import report


def rows(base: list[float], adapter: list[float] | None, same_text: bool = False) -> list[dict]:
    out = []
    for i, b in enumerate(base):
        a = adapter[i] if adapter is not None else None
        out.append({"index": i, "base_output": f"b{i}", "adapter_output": None if a is None else
                    (f"b{i}" if same_text else f"a{i}"), "base_scores": {"exact": b},
                    "adapter_scores": {} if a is None else {"exact": a}})
    return out


def test_wilson_matches_the_textbook_values_and_narrows_with_n() -> None:
    low, high = report.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert report.wilson(80, 100)[1] - report.wilson(80, 100)[0] < high - low
    assert report.wilson(0, 5)[0] == 0.0 and report.wilson(5, 5)[1] == 1.0
    assert report.wilson(0, 0) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_contains_the_mean() -> None:
    scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.5]
    first = report.bootstrap_mean(scores, random.Random(3))
    assert first == report.bootstrap_mean(scores, random.Random(3))
    assert first[0] <= sum(scores) / len(scores) <= first[1]


def test_an_adapter_right_everywhere_the_base_was_wrong_shows_a_positive_difference_and_flips() -> None:
    examples = rows([0.0] * 30, [1.0] * 30)
    summary = report.summarize(examples, ["exact"], seed=1)
    numbers = summary["scorers"]["exact"]
    assert numbers["base"]["mean"] == 0.0 and numbers["adapter"]["mean"] == 1.0
    assert numbers["base"]["method"] == "wilson"
    assert numbers["difference"]["mean"] == 1.0 and numbers["difference"]["ci"][0] > 0
    assert summary["fixed"] == 30 and summary["regressed"] == 0 and not summary["no_measurable_effect"]
    assert all(e["flip"] == "fixed" for e in examples)


def test_flips_go_both_ways_and_a_mixed_difference_straddles_zero() -> None:
    examples = rows([1, 0, 1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 1, 1, 0])
    summary = report.summarize(examples, ["exact"], seed=0)
    assert [e["flip"] for e in examples] == ["regressed", "fixed", None, None, "regressed", None, "fixed", None]
    assert summary["fixed"] == 2 and summary["regressed"] == 2
    low, high = summary["scorers"]["exact"]["difference"]["ci"]
    assert low < 0 < high


def test_identical_outputs_are_no_measurable_effect() -> None:
    summary = report.summarize(rows([1, 0, 1], [1, 0, 1], same_text=True), ["exact"])
    assert summary["no_measurable_effect"] and summary["identical_outputs"] == 3
    assert not report.summarize(rows([1, 0, 1], [1, 0, 1]), ["exact"])["no_measurable_effect"]


def test_a_base_alone_has_one_side_and_no_flips() -> None:
    summary = report.summarize(rows([1, 0, 1, 1], None), ["exact"])
    assert not summary["compared"] and "adapter" not in summary["scorers"]["exact"]
    assert summary["scorers"]["exact"]["base"]["mean"] == 0.75 and not summary["no_measurable_effect"]


def test_continuous_scores_use_the_bootstrap_and_a_scorer_that_never_applies_is_left_out() -> None:
    examples = rows([0.2, 0.5, 0.7], [0.3, 0.6, 0.9])
    for e in examples:
        e["base_scores"]["regex"] = e["adapter_scores"]["regex"] = None
    summary = report.summarize(examples, ["regex", "exact"])
    assert list(summary["scorers"]) == ["exact"] and summary["primary"] == "exact"
    assert summary["scorers"]["exact"]["base"]["method"] == "bootstrap"
