"""The run page's Samples section: per prompt the reference and each answer, the words that changed marked, the
sampling's share of training time, and a plain notice when the adapter changed no answer."""

from __future__ import annotations

import html
import re

from app.core.models import GenerationSample, Run, RunStatus
from app.pages.sample_diff import Piece, word_diff


def _run_with(resources, ids: dict, answers: dict[str, list[str]]) -> int:  # noqa: ANN001
    """An ended run whose samples are `answers` per kind (base step 0, eval step 5, final step 10), two prompts."""
    spec = {"model": {"base_model": ids["model"]}, "data": {"dataset_id": ids["dataset_id"]},
            "samples": {"count": 2, "budget": 0.1}}
    steps = {"base": 0, "eval": 5, "final": 10}
    with resources.session_factory() as session:
        run = Run(name="sampled", status=RunStatus.succeeded, method="lora", spec=spec,
                  dataset_id=ids["dataset_id"], base_model_id=ids["model_id"])
        session.add(run)
        session.flush()
        for kind, outputs in answers.items():
            for i, output in enumerate(outputs):
                session.add(GenerationSample(run_id=run.id, kind=kind, step=steps[kind], prompt_index=i,
                                             prompt=f"question {i}?", reference=f"reference {i}", output=output,
                                             seconds=0.25, train_seconds=20.0))
        session.commit()
        return run.id


def _section(page: str) -> str:
    return re.search(r'<section class="card" aria-labelledby="samples-title".*?</section>', page, re.S).group(0)


def test_the_run_page_shows_each_prompts_answers_with_the_changes_marked(client, resources, ids) -> None:
    run_id = _run_with(resources, ids, {"base": ["the cat sat", "hello"], "eval": ["the dog sat", "hello"],
                                        "final": ["the dog sat down", "hello there"]})
    section = _section(client.get(f"/runs/{run_id}").text)
    assert "question 0?" in section and "reference 1" in section
    first = re.search(r'id="sample-0".*?</article>', section, re.S).group(0)
    labels = re.findall(r"<dt[^>]*>([^<]*)", first)
    assert [label.strip() for label in labels] == ["base model", "step 5", "final (step 10)"]
    assert "<del>cat</del><ins>dog</ins>" in first and "<ins> down</ins>" in first
    assert "(unchanged)" in re.search(r'id="sample-1".*?</article>', section, re.S).group(0)
    cost = re.search(r'id="samples-cost">(.*?)</p>', section, re.S).group(1)
    assert "1.5 s" in " ".join(cost.split()) and "7.5 % of training time" in cost and "budget 10 %" in cost
    assert "no measurable effect" not in section
    assert client.get(f"/runs/{run_id}/samples").text.count('class="sample"') == 2


def test_answers_equal_to_the_base_models_on_every_prompt_say_no_measurable_effect(client, resources, ids) -> None:
    run_id = _run_with(resources, ids, {"base": ["same", "also same"], "final": ["same", "also same"]})
    section = _section(client.get(f"/runs/{run_id}").text)
    notice = html.unescape(re.search(r'id="samples-no-effect".*?</div>', section, re.S).group(0))
    assert "no measurable effect: the adapter's answers equal the base model's on every prompt" in notice


def test_a_run_without_samples_says_how_to_get_them(client, resources, ids) -> None:
    run_id = _run_with(resources, ids, {})
    assert 'id="samples-none"' in _section(client.get(f"/runs/{run_id}").text)


def test_word_diff_marks_insertions_and_deletions() -> None:
    assert word_diff("a b c", "a x c") == [Piece("same", "a "), Piece("del", "b"), Piece("ins", "x"),
                                           Piece("same", " c")]
    assert word_diff("", "new words") == [Piece("ins", "new words")]
    assert word_diff("same", "same") == [Piece("same", "same")]


def test_an_answer_checked_by_its_prompts_scorer_shows_whether_it_passes(client, resources, ids) -> None:
    run_id = _run_with(resources, ids, {"base": ["no", "x"], "final": ["reference 0", "x"]})
    with resources.session_factory() as session:
        for row in session.query(GenerationSample).filter_by(run_id=run_id, prompt_index=0):
            row.score = 1.0 if row.kind == "final" else 0.0
        session.commit()
    first = re.search(r'id="sample-0".*?</article>', _section(client.get(f"/runs/{run_id}").text), re.S).group(0)
    assert re.findall(r'data-score="([0-9.]+)">(\w+)<', first) == [("0.0", "fails"), ("1.0", "passes")]
    assert "data-score" not in re.search(r'id="sample-1".*?</article>', _section(
        client.get(f"/runs/{run_id}").text), re.S).group(0)
    answers = client.get(f"/api/runs/{run_id}/samples").json()["prompts"]
    assert [a["score"] for a in answers[0]["answers"]] == [0.0, 1.0] and answers[1]["answers"][0]["score"] is None
