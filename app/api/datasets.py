"""Dataset upload and listing."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.api.schemas import DatasetOut
from app.core.repositories import catalog
from app.core.services import datasets as dataset_service
from app.deps import CurrentUser, DatasetDep, SessionDep
from app.uploads import spooled_upload

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
async def upload_dataset(request: Request, session: SessionDep, user: CurrentUser) -> DatasetOut:
    """Upload a JSONL, JSON, CSV or Parquet file (multipart field 'file', or the raw body with ?filename=)."""
    async with spooled_upload(request) as (path, filename, name):
        dataset = dataset_service.create_dataset(session, path, filename, name, user=user)
    return DatasetOut.model_validate(dataset)


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, user: CurrentUser) -> list[DatasetOut]:
    """The user's datasets (an admin's: all), newest first."""
    return [DatasetOut.model_validate(d) for d in catalog.list_datasets(session, user)]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset: DatasetDep) -> DatasetOut:
    """One dataset."""
    return DatasetOut.model_validate(dataset)
