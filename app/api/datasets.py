"""Dataset upload and listing."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.api.schemas import DatasetOut
from app.core.repositories import catalog
from app.core.services import deletion
from app.deps import CurrentUser, DatasetDep, SessionDep
from app.uploads import store_upload

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
async def upload_dataset(request: Request, session: SessionDep, user: CurrentUser) -> DatasetOut:
    """Upload a JSONL, JSON, CSV or Parquet file (multipart field 'file', or the raw body with ?filename=)."""
    # Checking and storing run in a worker thread (store_upload): other requests are served meanwhile.
    return DatasetOut.model_validate(await store_upload(request, session, user))


@router.get("", response_model=list[DatasetOut])
def list_datasets(session: SessionDep, user: CurrentUser) -> list[DatasetOut]:
    """The user's datasets (an admin's: all), newest first."""
    return [DatasetOut.model_validate(d) for d in catalog.list_datasets(session, user)]


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset: DatasetDep) -> DatasetOut:
    """One dataset."""
    return DatasetOut.model_validate(dataset)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_dataset(dataset: DatasetDep, session: SessionDep) -> Response:
    """Delete a dataset and its analyses (409 while a run uses it: delete those runs first)."""
    deletion.delete_dataset(session, dataset)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
