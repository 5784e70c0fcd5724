"""The dataset doctor over JSON: request an analysis (computed once by a worker), then read it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from app.core.repositories import analyses as analyses_repo
from app.core.services import analyses as analysis_service
from app.deps import DatasetDep, RowId, SessionDep
from worker.planning.spec import MAX_SYSTEM_PROMPT

router = APIRouter(prefix="/api/datasets/{dataset_id}/analyses", tags=["datasets"])


class AnalysisIn(BaseModel):
    """Which tokenizer and length to see the dataset through."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="A registered base model's name (or its hub id / folder).")
    max_seq_length: int = Field(1024, description="The run's data.max_seq_length; longer rows count as truncated.")
    system_prompt: str | None = Field(
        None, max_length=MAX_SYSTEM_PROMPT,
        description="The run's data.system_prompt: the system turn of every chat without one (in place of a chat "
        "template's default).")


class AnalysisOut(BaseModel):
    """An analysis and, once it succeeded, the doctor's findings."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    base_model_id: int
    max_seq_length: int
    status: str
    result: dict[str, Any]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=AnalysisOut)
def request_analysis(body: AnalysisIn, dataset: DatasetDep, session: SessionDep) -> AnalysisOut:
    """Queue an analysis, or return the existing one for the same dataset, model, length and system prompt."""
    analysis = analysis_service.request_analysis_by_name(session, dataset, body.base_model, body.max_seq_length,
                                                         body.system_prompt)
    return AnalysisOut.model_validate(analysis)


@router.get("", response_model=list[AnalysisOut])
def list_analyses(dataset: DatasetDep, session: SessionDep) -> list[AnalysisOut]:
    """The dataset's analyses, newest first."""
    return [AnalysisOut.model_validate(a) for a in analyses_repo.list_for_dataset(session, dataset.id)]


@router.get("/{analysis_id}", response_model=AnalysisOut)
def get_analysis(analysis_id: RowId, dataset: DatasetDep, session: SessionDep) -> AnalysisOut:
    """One analysis of the dataset."""
    return AnalysisOut.model_validate(analysis_service.get_analysis(session, dataset.id, analysis_id))
