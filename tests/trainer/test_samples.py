"""Samples during training, on the tiny model for real: the base model's answers once, the adapter's at each
evaluation and at the end, on held-out prompts with their references; within a budget; none at the end of a
cancelled run."""

from __future__ import annotations

import pytest

from worker.planning.reports import Metric, Report, Samples
from worker.trainer import loop
from worker.trainer.data import run_data
from worker.trainer.sinks import ListSink
from worker.trainer.tokenizers import load_tokenizer

TRAINING = {"max_steps": 6, "eval_steps": 3, "save_steps": None, "logging_steps": 3}


def _rounds(sink: ListSink) -> list[Samples]:
    return [r for r in sink.reports if isinstance(r, Samples)]


def _held_out(spec) -> list[tuple[str, str]]:  # noqa: ANN001
    """(last user turn, last assistant answer) of the run's held-out records, in the split's order."""
    data = run_data(spec, load_tokenizer(spec), ListSink())
    pairs = []
    for record in data.held_out:
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        user = next(m["content"] for m in reversed(messages[:last]) if m["role"] == "user")
        pairs.append((user, messages[last]["content"]))
    return pairs


def test_a_run_samples_the_base_each_evaluation_and_the_end(make_spec, tmp_path) -> None:
    spec = make_spec(data={"eval_fraction": 0.1}, training=TRAINING,
                     samples={"count": 2, "max_new_tokens": 6, "budget": 1.0})  # 1: every evaluation
    sink = ListSink()
    result = loop.train(spec, tmp_path, sink)
    assert result.status == "succeeded"
    rounds = _rounds(sink)
    assert [(r.kind, r.step, r.skipped) for r in rounds] == [("base", 0, None), ("eval", 3, None), ("eval", 6, None),
                                                               ("final", 6, None)]
    expected = _held_out(spec)[:2]
    for r in rounds:
        assert [(s.index, s.prompt, s.reference) for s in r.samples] == [(0, *expected[0]), (1, *expected[1])]
        assert all(isinstance(s.output, str) for s in r.samples)
    # The final round is the last evaluation's answers (same weights), not generated twice.
    assert [s.output for s in rounds[-1].samples] == [s.output for s in rounds[-2].samples]
    assert all(s.seconds == 0.0 for s in rounds[-1].samples) and rounds[-1].seconds == 0.0
    # The base answers come before training's clock starts, the eval metric before its samples.
    kinds = [(type(r).__name__, getattr(r, "kind", None)) for r in sink.reports]
    assert kinds.index(("Samples", "base")) < kinds.index(("Started", None))
    evals = [i for i, r in enumerate(sink.reports) if isinstance(r, Metric) and r.eval_loss is not None]
    assert evals[0] < kinds.index(("Samples", "eval"))
    last = rounds[-1]
    assert last.train_s > 0 and last.sampling_s == pytest.approx(sum(r.seconds for r in rounds[:-1]), abs=1e-3)
    print(f"tiny model: sampling {last.sampling_s:.3f} s of {last.train_s:.3f} s training "
          f"({last.sampling_s / last.train_s:.1%})")


def test_a_tiny_budget_skips_the_evaluations_rounds_but_not_the_base_or_final(make_spec, tmp_path) -> None:
    spec = make_spec(data={"eval_fraction": 0.1}, training={**TRAINING, "max_steps": 4, "eval_steps": 2},
                     samples={"count": 2, "max_new_tokens": 6, "budget": 0.0001})
    sink = ListSink()
    loop.train(spec, tmp_path, sink)
    rounds = _rounds(sink)
    assert [(r.kind, r.step, r.skipped, len(r.samples)) for r in rounds] == [
        ("base", 0, None, 2), ("eval", 2, "budget", 0), ("eval", 4, "budget", 0), ("final", 4, None, 2)]
    assert rounds[-1].seconds > 0 and rounds[-1].budget == 0.0001


def test_given_prompts_are_sampled_without_an_eval_split(make_spec, tmp_path) -> None:
    prompts = [{"prompt": "What is the capital of Italy?", "expected": "Rome.", "scorer": "exact"},
               {"prompt": "Say hello."}, {"prompt": "Anything?", "expected": "^", "scorer": "regex"}]
    spec = make_spec(training={"max_steps": 2, "save_steps": None},
                     samples={"count": 3, "max_new_tokens": 4, "prompts": prompts})
    sink = ListSink()
    loop.train(spec, tmp_path, sink)
    rounds = _rounds(sink)
    assert [(r.kind, r.step) for r in rounds] == [("base", 0), ("final", 2)]
    assert [(s.prompt, s.reference) for s in rounds[0].samples] == [("What is the capital of Italy?", "Rome."),
                                                                     ("Say hello.", None), ("Anything?", "^")]
    for samples in (rounds[0].samples, rounds[1].samples):  # each answer scored by its prompt's scorer, if any
        rome, hello, anything = samples
        assert rome.score == float(" ".join(rome.output.split()) == "Rome.")
        assert hello.score is None and anything.score == 1.0


class StopAt(ListSink):
    """Asks the run to stop once a metric of `step` arrives (as a cancel between two steps would)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.stop = step, False

    def emit(self, report: Report) -> None:
        super().emit(report)
        if isinstance(report, Metric) and report.step >= self.step:
            self.stop = True


def test_a_cancelled_run_skips_its_final_samples(make_spec, tmp_path) -> None:
    spec = make_spec(data={"eval_fraction": 0.1}, training={**TRAINING, "logging_steps": 1},
                     samples={"count": 2, "max_new_tokens": 4})
    sink = StopAt(2)
    result = loop.train(spec, tmp_path, sink, should_stop=lambda: sink.stop)
    assert result.status == "cancelled"
    rounds = _rounds(sink)
    assert [(r.kind, r.skipped) for r in rounds] == [("base", None), ("final", "cancelled")]
    assert rounds[-1].samples == []


def test_count_zero_samples_nothing(make_spec, tmp_path) -> None:
    sink = ListSink()
    loop.train(make_spec(data={"eval_fraction": 0.1}, training={"max_steps": 1, "save_steps": None},
                         samples={"count": 0}), tmp_path, sink)
    assert _rounds(sink) == []
