"""A run's generation samples: per prompt, the base model's answer, the adapter's at each sampled step and the
final one, with the reference and what sampling cost."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.core.services import samples as sample_service
from app.deps import RunDep, SessionDep

router = APIRouter(prefix="/api/runs/{run_id}/samples", tags=["runs"])


class AnswerOut(BaseModel):
    """One answer on a prompt's timeline."""

    kind: str = Field(description="base (the model without the adapter), eval (at an evaluation) or final")
    step: int = Field(description="The optimizer step it was sampled at (0 for the base model)")
    output: str
    seconds: float = Field(description="Its generation time")
    score: float | None = Field(None, description="1 (passes) or 0 by the prompt's scorer; null without one")


class PromptOut(BaseModel):
    """A prompt, its reference answer and its answers in order: base, each sampled step, final."""

    index: int
    prompt: str
    reference: str | None
    answers: list[AnswerOut]


class SamplesOut(BaseModel):
    """A run's samples and what they cost."""

    prompts: list[PromptOut]
    sampling_s: float = Field(description="Generation seconds of every stored answer")
    train_s: float = Field(description="Training seconds (sampling excluded) when the newest round ran")
    share: float | None = Field(description="sampling_s / train_s, the cost the spec's samples.budget bounds")
    no_effect: bool = Field(description="The final answers equal the base model's on every prompt")


@router.get("", response_model=SamplesOut)
def run_samples(run: RunDep, session: SessionDep) -> SamplesOut:
    """The run's samples, by prompt."""
    found = sample_service.run_samples(session, run.id)
    prompts = [PromptOut(index=p.index, prompt=p.prompt, reference=p.reference,
                         answers=[AnswerOut(kind=a.kind, step=a.step, output=a.output, seconds=a.seconds,
                                            score=a.score)
                                  for a in p.answers]) for p in found.prompts]
    return SamplesOut(prompts=prompts, sampling_s=found.sampling_s, train_s=found.train_s, share=found.share,
                      no_effect=found.no_effect)
