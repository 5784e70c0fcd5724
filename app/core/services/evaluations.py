"""Evaluation use cases: request one (checked, then queued after commit), list and read them, claim, beat, record
progress, cancel, finish (every example stored with the summary in one unit of work) and fail. A lost worker's
evaluation is queued again by services.recovery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import jobs
from app.core.access import can_see, owner_id
from app.core.config import Settings
from app.core.db import db_now, utcnow
from app.core.errors import StudioError, not_found
from app.core.eval_sets import prompt_text, usable_examples
from app.core.generation import catalog
from app.core.generation.protocol import MAX_PROMPT_CHARS
from app.core.models import Dataset, Evaluation, EvaluationExample, User
from app.core.repositories import catalog as catalog_repo
from app.core.repositories import evaluations as evaluations_repo
from app.core.services import datasets as dataset_service

EVALUATE_TASK = "evaluations.run"
SCORERS = ("exact", "contains", "regex", "json", "json_schema", "choice", "overlap", "judge")
MAX_EXAMPLES = 500
MAX_NEW_TOKENS = 1024
MAX_SEED = 2**31 - 1
MAX_RUBRIC = 4000
PAGE_EXAMPLES = 50


@dataclass(frozen=True)
class EvaluationSpec:
    """What a person asks for: the eval set, the model, how to score, and the bounds of the generation."""

    dataset_id: int
    model: str
    scorers: Sequence[str] = ("exact",)
    general_dataset_id: int | None = None
    max_examples: int = 50
    max_new_tokens: int = 64
    seed: int = 0
    rubric: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def create_evaluation(session: Session, settings: Settings, user: User | None, spec: EvaluationSpec) -> Evaluation:
    """Check the request (each refusal names its field), store the evaluation and queue its job after commit."""
    scorers = _checked(settings, spec)
    dataset = _eval_set(session, user, spec.dataset_id, "dataset_id", spec.max_examples)
    general = (_eval_set(session, user, spec.general_dataset_id, "general_dataset_id", spec.max_examples)
               if spec.general_dataset_id is not None else None)
    resolved = catalog.resolve(session, spec.model.strip(), user)  # None (internal) sees every model
    adapter = resolved.adapter
    evaluation = Evaluation(
        owner_id=owner_id(user), model=resolved.model_id, run_id=adapter.run_id if adapter else None,
        base_model_id=_base_id(session, resolved.base.name), base_name=resolved.base.name,
        adapter_sha256=adapter.sha256 if adapter else None, dataset_id=dataset.id,
        adapter_version_id=adapter.version_id if adapter else None,
        general_dataset_id=general.id if general else None, scorers=scorers, status="queued", summary={},
        params={"max_examples": spec.max_examples, "max_new_tokens": spec.max_new_tokens, "seed": spec.seed,
                "rubric": (spec.rubric or "").strip() or None})
    session.add(evaluation)
    session.flush()
    jobs.enqueue(session, EVALUATE_TASK, evaluation_id=evaluation.id)
    return evaluation


def _base_id(session: Session, name: str) -> int | None:
    entry = catalog_repo.find_model(session, name)
    return entry.id if entry else None


def _checked(settings: Settings, spec: EvaluationSpec) -> list[str]:
    """The scorers, deduplicated in order; StudioError (422) naming the first field out of bounds."""
    scorers = list(dict.fromkeys(spec.scorers))
    unknown = [s for s in scorers if s not in SCORERS]
    if not scorers or unknown:
        what = f"Unknown scorer {unknown[0][:40]!r}" if unknown else "No scorer given"
        raise StudioError("invalid", "invalid_scorer", f"{what}; choose from {', '.join(SCORERS)}.",
                          field="scorers")
    _bound("max_examples", spec.max_examples, 1, MAX_EXAMPLES)
    _bound("max_new_tokens", spec.max_new_tokens, 1, MAX_NEW_TOKENS)
    _bound("seed", spec.seed, 0, MAX_SEED)
    rubric = (spec.rubric or "").strip()
    if len(rubric) > MAX_RUBRIC:
        raise StudioError("invalid", "invalid_rubric", f"The rubric is {len(rubric):,} characters; at most "
                          f"{MAX_RUBRIC:,}.", field="rubric")
    if "judge" in scorers:
        if not settings.judge_base_url:
            raise StudioError("invalid", "judge_not_configured", "The judge scorer needs a judge endpoint, and the "
                              "admin has configured none (LORASTUDIO_JUDGE_BASE_URL).", field="scorers")
        if not rubric:
            raise StudioError("invalid", "rubric_required", "The judge scorer needs a rubric: what a good answer "
                              "does, for the judge to grade against.", field="rubric")
    return scorers


def _bound(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise StudioError("invalid", f"invalid_{name}", f"{name} must be between {low} and {high:,} (got "
                          f"{value}).", field=name)


def _eval_set(session: Session, user: User | None, dataset_id: int, field_name: str, limit: int) -> Dataset:
    """A dataset user may see whose first rows give at least one prompt; 404 or 422 naming the field."""
    try:
        dataset = dataset_service.get_dataset(session, dataset_id, user=user)
    except StudioError as exc:
        exc.field = field_name
        raise
    rows = dataset_service.canonical_rows(session, dataset, 0, limit)
    examples = usable_examples(rows)
    if not examples:
        raise StudioError("invalid", "no_usable_prompts", f"Dataset {dataset.id} ('{dataset.name}') has no row "
                          f"with a prompt among its first {min(limit, dataset.row_count)}: an eval set needs prompt "
                          "+ completion rows or chats ending in the assistant's answer (its format is "
                          f"{dataset.format}).", field=field_name)
    for example in examples:
        if len(prompt_text(example)) > MAX_PROMPT_CHARS:
            raise StudioError("invalid", "prompt_too_long", f"Row {example['index'] + 1} of dataset {dataset.id}: "
                              f"the prompt is longer than {MAX_PROMPT_CHARS:,} characters.", field=field_name,
                              line=example["index"] + 1)
    return dataset


def get_evaluation(session: Session, evaluation_id: int, user: User | None) -> Evaluation:
    """An evaluation user may see, or 404 (someone else's reads as missing)."""
    evaluation = evaluations_repo.get(session, evaluation_id)
    if evaluation is None or not can_see(user, evaluation.owner_id):
        raise not_found("evaluation", evaluation_id)
    return evaluation


def list_evaluations(session: Session, user: User) -> Sequence[Evaluation]:
    """The evaluations user may see, newest first."""
    return evaluations_repo.list_visible(session, user)


def claim_evaluation(session: Session, evaluation_id: int) -> int | None:
    """Take a queued evaluation: its attempt number, or None if another delivery already did (or it was
    cancelled)."""
    now = utcnow()
    if not evaluations_repo.transition(session, evaluation_id, ["queued"], status="running", started_at=now,
                                       heartbeat_at=db_now(session), attempts=Evaluation.attempts + 1):
        return None
    return session.scalar(select(Evaluation.attempts).where(Evaluation.id == evaluation_id))


def beat(session: Session, evaluation_id: int, attempt: int) -> str:
    """The job's heartbeat: "go" (beat recorded), "cancel" (a cancel was asked for; recorded too, so the stop
    does not look like a lost worker), or "lost" (no longer this attempt's: reaped, and perhaps taken again)."""
    mine = (Evaluation.attempts == attempt,)
    if not evaluations_repo.transition(session, evaluation_id, ["running"], *mine, heartbeat_at=db_now(session)):
        return "lost"
    cancel = session.scalar(select(Evaluation.cancel_requested).where(Evaluation.id == evaluation_id))
    return "cancel" if cancel else "go"


def cancel_evaluation(session: Session, evaluation: Evaluation) -> Evaluation:
    """Cancel a queued evaluation at once; ask a running one to stop (its job ends it, storing nothing); refuse a
    finished one."""
    if evaluations_repo.transition(session, evaluation.id, ["queued"], status="cancelled", cancel_requested=True,
                                   finished_at=utcnow()):
        session.refresh(evaluation)
        return evaluation
    if evaluations_repo.transition(session, evaluation.id, ["running"], cancel_requested=True):
        session.refresh(evaluation)
        return evaluation
    session.refresh(evaluation)
    raise StudioError("conflict", "evaluation_finished", f"Evaluation {evaluation.id} is already "
                      f"{evaluation.status}; nothing to cancel.")


def end_cancelled(session: Session, evaluation_id: int) -> bool:
    """A running evaluation whose job stopped on request: cancelled, nothing stored."""
    return evaluations_repo.transition(session, evaluation_id, ["running"], status="cancelled", finished_at=utcnow())


def record_progress(session: Session, evaluation_id: int, done: int, total: int) -> None:
    """How many generations are done, of how many."""
    evaluations_repo.transition(session, evaluation_id, ["running"], progress_done=done, progress_total=total)


def finish_evaluation(session: Session, evaluation_id: int, summary: dict[str, Any],
                      examples: list[dict[str, Any]]) -> bool:
    """Store the summary and every example together; False (nothing stored) if the evaluation is not running."""
    if not evaluations_repo.transition(session, evaluation_id, ["running"], status="succeeded", summary=summary,
                                       error=None, finished_at=utcnow()):
        return False
    session.add_all(EvaluationExample(evaluation_id=evaluation_id, **example) for example in examples)
    session.flush()
    return True


def fail_evaluation(session: Session, evaluation_id: int, error: str) -> None:
    """Record why an evaluation could not be computed."""
    evaluations_repo.transition(session, evaluation_id, ["queued", "running"], status="failed", error=error[:4000],
                                finished_at=utcnow())
