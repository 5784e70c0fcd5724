"""The scorers and the judge's verdict parser: pure functions on an output and its example."""

from __future__ import annotations

import pytest

from worker.evaluation import scorers
from worker.evaluation.judge import parse_verdict
from worker.evaluation.scorers import ScorerError


def ex(reference: str = "Paris", **extra) -> dict:  # noqa: ANN003
    return {"index": 0, "line": 1, "prompt": "q", "reference": reference, **extra}


def test_exact_normalises_whitespace_but_keeps_case() -> None:
    assert scorers.exact("  Paris \n", ex()) == 1.0
    assert scorers.exact("paris", ex()) == 0.0
    assert scorers.exact("Paris, France", ex()) == 0.0


def test_contains_ignores_case_and_has_nothing_to_say_on_an_empty_reference() -> None:
    assert scorers.contains("It is PARIS, of course.", ex()) == 1.0
    assert scorers.contains("Lyon", ex()) == 0.0
    assert scorers.contains("anything", ex("  ")) is None


def test_regex_reads_the_rows_pattern_and_refuses_a_broken_one() -> None:
    assert scorers.regex_match("The answer is 42.", ex(pattern=r"\b42\b")) == 1.0
    assert scorers.regex_match("The answer is 420.", ex(pattern=r"\b42\b")) == 0.0
    assert scorers.regex_match("x", ex()) is None
    with pytest.raises(ScorerError, match="Line 1: the pattern does not compile"):
        scorers.regex_match("x", ex(pattern="(unclosed"))


def test_json_accepts_a_fenced_document_and_refuses_prose() -> None:
    assert scorers.json_valid('{"a": 1}', ex()) == 1.0
    assert scorers.json_valid('```json\n{"a": 1}\n```', ex()) == 1.0
    assert scorers.json_valid("Sure! {a: 1}", ex()) == 0.0


def test_json_schema_checks_the_document_against_the_rows_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert scorers.json_schema('{"a": 1}', ex(schema=schema)) == 1.0
    assert scorers.json_schema('{"a": "one"}', ex(schema=schema)) == 0.0
    assert scorers.json_schema("not json", ex(schema=schema)) == 0.0
    assert scorers.json_schema('{"a": 1}', ex()) is None
    with pytest.raises(ScorerError, match="not a valid JSON Schema"):
        scorers.json_schema("{}", ex(schema={"type": "no-such-type"}))


@pytest.mark.parametrize(("output", "score"), [
    ("Paris", 1.0), ("paris.", 1.0), ("I think the answer is Paris", 1.0),
    ("Lyon", 0.0), ("Paris or Lyon", 0.0), ("no idea", 0.0),
])
def test_choice_maps_the_answer_to_one_choice(output: str, score: float) -> None:
    assert scorers.choice(output, ex("Paris", choices=["Lyon", "Paris", "Nice"])) == score


def test_choice_picks_by_letter_and_by_text() -> None:
    assert scorers.pick_choice("b) the second", ["A", "B"]) == "B"
    assert scorers.pick_choice("Paris.", ["Lyon", "Paris"]) == "Paris"
    assert scorers.pick_choice("Paris or Lyon", ["Lyon", "Paris"]) is None
    assert scorers.choice("anything", ex()) is None


def test_overlap_is_chrf_in_the_unit_interval() -> None:
    same = scorers.overlap("the cat sat on the mat", ex("the cat sat on the mat"))
    close = scorers.overlap("the cat sat on a mat", ex("the cat sat on the mat"))
    far = scorers.overlap("quantum chromodynamics", ex("the cat sat on the mat"))
    assert same == pytest.approx(1.0) and 0 < far < close < same
    assert scorers.overlap("x", ex("")) is None


@pytest.mark.parametrize(("text", "verdict"), [
    ("PASS", 1.0), ("Verdict: fail", 0.0), ("8/10 because it is close", 0.8), ("10", 1.0), ("Score: 3", 0.3),
    ("I cannot grade this", None),
])
def test_the_judges_verdict_is_a_score_or_pass_fail(text: str, verdict: float | None) -> None:
    assert parse_verdict(text) == verdict
