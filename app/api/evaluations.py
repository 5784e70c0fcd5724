"""Evaluations over JSON: request one (a queued job), list them, read one with a page of its examples."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app.core.repositories import evaluations as evaluations_repo
from app.core.services import deletion
from app.core.services import evaluations as evaluation_service
from app.deps import MAX_ROW_ID, CurrentUser, RowId, SessionDep, SettingsDep

router = APIRouter(prefix="/api/evaluations", tags=["evaluations"])
Scorer = Literal["exact", "contains", "regex", "json", "json_schema", "choice", "overlap", "judge"]


class EvaluationIn(BaseModel):
    """What to evaluate, on what, and how to score it."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: int = Field(ge=1, le=MAX_ROW_ID, description="The eval set: one of your datasets (prompt + "
                            "completion rows, or chats ending in the assistant's answer).")
    model: str = Field(min_length=1, max_length=200, description="A base model's name, or run-<id> for a run's "
                       "adapter (compared with its base on the same prompts).")
    scorers: list[Scorer] = Field(["exact"], min_length=1, max_length=8, description="How answers are scored.")
    general_dataset_id: int | None = Field(None, ge=1, le=MAX_ROW_ID, description="A general-ability set, scored "
                                           "the same way: what the adapter forgot shows there.")
    max_examples: int = Field(50, ge=1, le=evaluation_service.MAX_EXAMPLES, description="Rows used from each set.")
    max_new_tokens: int = Field(64, ge=1, le=evaluation_service.MAX_NEW_TOKENS, description="Longest answer.")
    seed: int = Field(0, ge=0, le=evaluation_service.MAX_SEED, description="Seed (generation is greedy; the "
                      "bootstrap intervals use it).")
    rubric: str | None = Field(None, max_length=evaluation_service.MAX_RUBRIC, description="What the judge "
                               "grades against (the judge scorer only).")


class EvaluationOut(BaseModel):
    """An evaluation and, once it succeeded, its summary."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    model: str
    base_name: str
    run_id: int | None
    adapter_sha256: str | None
    dataset_id: int | None
    general_dataset_id: int | None
    scorers: list[str]
    params: dict[str, Any]
    status: str
    cancel_requested: bool
    attempts: int
    progress_done: int
    progress_total: int
    error: str | None
    summary: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ExampleOut(BaseModel):
    """One example: both answers and their scores."""

    model_config = ConfigDict(from_attributes=True)

    part: str
    index: int
    prompt: str
    reference: str
    base_output: str
    adapter_output: str | None
    adapter_sha256: str | None
    base_scores: dict[str, Any]
    adapter_scores: dict[str, Any]
    flip: str | None


class EvaluationDetailOut(EvaluationOut):
    """An evaluation with one page of its examples (flips first)."""

    examples: list[ExampleOut]
    examples_total: int


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=EvaluationOut)
def create_evaluation(body: EvaluationIn, session: SessionDep, settings: SettingsDep,
                      user: CurrentUser) -> EvaluationOut:
    """Queue an evaluation; refusals name the field (an unknown or someone else's model or dataset is a 404)."""
    spec = evaluation_service.EvaluationSpec(**body.model_dump())
    return EvaluationOut.model_validate(evaluation_service.create_evaluation(session, settings, user, spec))


@router.get("", response_model=list[EvaluationOut])
def list_evaluations(session: SessionDep, user: CurrentUser) -> list[EvaluationOut]:
    """Your evaluations (an admin's: all), newest first."""
    return [EvaluationOut.model_validate(e) for e in evaluation_service.list_evaluations(session, user)]


@router.get("/{evaluation_id}", response_model=EvaluationDetailOut)
def get_evaluation(evaluation_id: RowId, session: SessionDep, user: CurrentUser,
                   part: Literal["main", "general"] = "main", offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
                   limit: Annotated[int, Query(ge=1, le=200)] = evaluation_service.PAGE_EXAMPLES,
                   ) -> EvaluationDetailOut:
    """One evaluation and a page of its examples of one part."""
    evaluation = evaluation_service.get_evaluation(session, evaluation_id, user)
    examples = evaluations_repo.examples_page(session, evaluation.id, part, offset, limit)
    return EvaluationDetailOut(**EvaluationOut.model_validate(evaluation).model_dump(),
                               examples=[ExampleOut.model_validate(e) for e in examples],
                               examples_total=evaluations_repo.count_examples(session, evaluation.id, part))


@router.post("/{evaluation_id}/cancel", response_model=EvaluationOut)
def cancel_evaluation(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> EvaluationOut:
    """Cancel a queued evaluation now, or ask a running one to stop (nothing of it is stored); 409 once finished."""
    evaluation = evaluation_service.get_evaluation(session, evaluation_id, user)
    return EvaluationOut.model_validate(evaluation_service.cancel_evaluation(session, evaluation))


@router.delete("/{evaluation_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_evaluation(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    """Delete a finished evaluation with its examples (409 while it is queued or running: cancel it first)."""
    deletion.delete_evaluation(session, evaluation_service.get_evaluation(session, evaluation_id, user))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
