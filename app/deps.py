"""Named request dependencies: the unit of work, settings, resources, loaded objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import not_found
from app.core.models import Dataset, Run
from app.core.resources import Resources
from app.core.services import runs as run_service


def get_resources(request: Request) -> Resources:
    """The app's resources (set by create_app)."""
    return request.app.state.resources


def get_session(res: Annotated[Resources, Depends(get_resources)]) -> Iterator[Session]:
    """One unit of work per request: committed when the route returns, rolled back on error."""
    with session_scope(res.session_factory) as session:
        yield session


ResourcesDep = Annotated[Resources, Depends(get_resources)]
# "function" scope commits before the response goes out: a 201 means the row is there (and its job sent).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings_dep(res: ResourcesDep) -> Settings:
    """The app's settings."""
    return res.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


# Ids are PostgreSQL INTEGER columns: a larger number names no row, and would overflow the driver (a 500).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
OptionalRowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]


def get_run(run_id: RowId, session: SessionDep) -> Run:
    """The run named in the path, or 404."""
    return run_service.get_run(session, run_id)


def get_dataset(dataset_id: RowId, session: SessionDep) -> Dataset:
    """The dataset named in the path, or 404."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset


RunDep = Annotated[Run, Depends(get_run)]
DatasetDep = Annotated[Dataset, Depends(get_dataset)]
