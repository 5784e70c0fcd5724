"""Named request dependencies: the unit of work, settings, resources, the signed-in user, owned objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app import auth
from app.auth import Caller
from app.core.config import Settings
from app.core.db import session_scope
from app.core.models import Dataset, Run, User
from app.core.resources import Resources
from app.core.services import datasets as dataset_service
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


def identify_caller(request: Request, session: SessionDep) -> Caller | None:
    """Who the request's credentials name; public routes are not asked for any."""
    return None if auth.is_public(request) else auth.identify(request, session)


async def guard(request: Request, caller: Annotated[Caller | None, Depends(identify_caller)]) -> Caller | None:
    """On every route (create_app adds it app-wide, so none can be forgotten): outside the public list a
    signed-in user is required, and a cookie request that changes something must carry its CSRF token."""
    if auth.is_public(request):
        return None
    if caller is None:
        raise auth.not_signed_in()
    await auth.check_csrf(request, caller)
    request.state.caller = caller  # for the templates: the user's name and the CSRF token of the forms
    return caller


def current_user(caller: Annotated[Caller | None, Depends(guard)]) -> User:
    """The signed-in user (the same guard run, cached for the request)."""
    if caller is None:
        raise auth.not_signed_in()
    return caller.user


CurrentUser = Annotated[User, Depends(current_user)]


def get_run(run_id: RowId, session: SessionDep, user: CurrentUser) -> Run:
    """The run named in the path if the user may see it, or 404."""
    return run_service.get_run(session, run_id, user=user)


def get_dataset(dataset_id: RowId, session: SessionDep, user: CurrentUser) -> Dataset:
    """The dataset named in the path if the user may see it, or 404."""
    return dataset_service.get_dataset(session, dataset_id, user=user)


RunDep = Annotated[Run, Depends(get_run)]
DatasetDep = Annotated[Dataset, Depends(get_dataset)]
