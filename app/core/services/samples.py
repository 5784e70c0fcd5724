"""Generation samples: a run's answers to its sample prompts, recorded from the trainer's Samples reports and read
back as one timeline per prompt (base → each sampled step → final), with the sampling's share of training time."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.core.models import GenerationSample
from app.core.repositories import samples as samples_repo
from app.core.services.runs import add_to_timeline
from worker.planning.reports import Samples

NO_EFFECT = "no measurable effect: the adapter's answers equal the base model's on every prompt"


def record_samples(session: Session, run_id: int, report: Samples) -> None:
    """Store a sampling round (replacing the same round of an earlier attempt); a skipped one goes on the timeline."""
    if report.kind == "base":  # a new attempt: what an earlier one sampled past its start is sampled again
        samples_repo.drop_after(session, run_id, report.resumed_from)
    if report.skipped:
        add_to_timeline(session, run_id, "samples", _skipped_message(report), step=report.step, round=report.kind,
                        skipped=report.skipped)
        return
    samples_repo.drop_round(session, run_id, report.kind, report.step)
    session.add_all(GenerationSample(run_id=run_id, step=report.step, kind=report.kind, prompt_index=s.index,
                                     prompt=s.prompt, reference=s.reference, output=s.output, seconds=s.seconds,
                                     score=s.score, train_seconds=report.train_s) for s in report.samples)
    if report.kind == "final":
        share = f"{report.sampling_s / report.train_s:.1%}" if report.train_s > 0 else "n/a"
        add_to_timeline(session, run_id, "samples", f"Sampled {len(report.samples)} final answers; sampling took "
                        f"{report.sampling_s:.1f} s, {share} of training time (budget {report.budget:.0%}).")
    session.flush()


def _skipped_message(report: Samples) -> str:
    what = "Final samples" if report.kind == "final" else f"Samples at step {report.step}"
    if report.skipped == "cancelled":
        return f"{what} skipped: the run was cancelled."
    share = report.sampling_s / report.train_s if report.train_s > 0 else 0.0
    return (f"{what} skipped: sampling has taken {share:.1%} of training time so far, and another round would go "
            f"over the budget of {report.budget:.0%}.")


@dataclass(frozen=True)
class Answer:
    """One answer on a prompt's timeline."""

    kind: str  # base | eval | final
    step: int
    output: str
    seconds: float
    score: float | None = None  # 1 or 0 by the prompt's scorer (samples.prompts[i].scorer), None without one

    @property
    def label(self) -> str:
        """How the run page names it."""
        return {"base": "base model", "final": f"final (step {self.step})"}.get(self.kind, f"step {self.step}")


@dataclass
class PromptSamples:
    """A prompt, its reference and its answers in order."""

    index: int
    prompt: str
    reference: str | None
    answers: list[Answer] = field(default_factory=list)

    def answer(self, kind: str) -> Answer | None:
        """The base or final answer, if sampled."""
        return next((a for a in self.answers if a.kind == kind), None)


@dataclass
class RunSamples:
    """A run's samples per prompt, what sampling cost, and whether the adapter changed any answer."""

    prompts: list[PromptSamples]
    sampling_s: float
    train_s: float

    @property
    def share(self) -> float | None:
        """Generation seconds over training seconds (None before any training time is known)."""
        return self.sampling_s / self.train_s if self.train_s > 0 else None

    @property
    def no_effect(self) -> bool:
        """Every prompt has a base and a final answer, and they are the same."""
        pairs = [(p.answer("base"), p.answer("final")) for p in self.prompts]
        return bool(pairs) and all(b is not None and f is not None and b.output == f.output for b, f in pairs)


def run_samples(session: Session, run_id: int) -> RunSamples:
    """The run's samples, grouped by prompt."""
    rows = samples_repo.of_run(session, run_id)
    prompts: dict[int, PromptSamples] = {}
    for row in rows:
        entry = prompts.setdefault(row.prompt_index, PromptSamples(row.prompt_index, row.prompt, row.reference))
        entry.answers.append(Answer(row.kind, row.step, row.output, row.seconds, row.score))
    train_s = max((row.train_seconds for row in rows), default=0.0)
    return RunSamples(list(prompts.values()), sum(row.seconds for row in rows), train_s)
