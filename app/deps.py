"""Named request dependencies: the unit of work, settings, resources, the signed-in user, owned objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import auth
from app.auth import Caller
from app.core.config import Settings
from app.core.db import GateTimeout
from app.core.models import Dataset, RegisteredAdapter, Run, User
from app.core.resources import Resources
from app.core.services import datasets as dataset_service
from app.core.services import registry
from app.core.services import runs as run_service


async def get_resources(request: Request) -> Resources:
    """The app's resources (set by create_app); async, as every cheap dependency here: a sync one would hop to
    the thread pool, and wait in its line under load."""
    return request.app.state.resources


RETRY_AFTER_S = 2


def busy(message: str, retry_after_s: int = RETRY_AFTER_S, status: int = 503) -> HTTPException:
    """A 503 (or 429) that tells the client when to try again, instead of a 500 or a hang."""
    return HTTPException(status, message, headers={"Retry-After": str(retry_after_s)})


class UnitOfWork:
    """A request's database work: opened on first use only, so routes and dependencies that need no database
    (/healthz, /readyz) never wait for a connection.

    Opening takes one of the process's DB slots (Resources.db_gate: as many as the pool has connections), waiting
    in the event loop (holding no thread and no connection) up to db_wait_s, else a 503 with Retry-After. A request
    then holds at most one pooled connection, and every holder is guaranteed one: waiting for a worker thread while
    holding a connection can no longer starve the threads that wait for connections (the deadlock of issue 16)."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.session: Session | None = None
        self._lock = anyio.Lock()
        self._slot: object | None = None

    async def open(self) -> Session:
        """The request's session (one per request), taking a DB slot the first time."""
        async with self._lock:
            if self.session is None:
                try:
                    self._slot = await self.res.db_gate.acquire()
                except GateTimeout as exc:
                    raise busy(f"The studio is busy: no database connection was free within {exc.waited_s:g} s "
                               "(LORASTUDIO_DB_WAIT_S). Try again in a moment.") from None
                self.session = self.res.session_factory()
            return self.session

    async def close(self, error: BaseException | None) -> None:
        """Commit (or roll back after an error), give the connection back, then the slot. Shielded: a client that
        went away must not leave a connection checked out."""
        if self.session is None:
            return
        session, self.session = self.session, None
        try:
            with anyio.CancelScope(shield=True):
                # Its own thread (limiter of one, as FastAPI does for sync dependencies' exits): ending a unit of
                # work never queues behind the routes waiting for the shared thread pool.
                await anyio.to_thread.run_sync(_end, session, error is None, limiter=anyio.CapacityLimiter(1))
        finally:
            self.res.db_gate.release(self._slot)


def _end(session: Session, ok: bool) -> None:
    try:
        if ok:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_unit_of_work(res: Annotated[Resources, Depends(get_resources)]) -> AsyncIterator[UnitOfWork]:
    """One unit of work per request: committed when the route returns, rolled back on error."""
    work = UnitOfWork(res)
    try:
        yield work
    except sa_exc.TimeoutError:  # the pool's own checkout timeout (a connection taken outside the gate)
        await work.close(RuntimeError("pool timeout"))
        raise busy("The studio is busy: the database connection pool is exhausted. Try again in a moment.") from None
    except BaseException as exc:
        await work.close(exc)
        raise
    await work.close(None)


ResourcesDep = Annotated[Resources, Depends(get_resources)]
# "function" scope commits before the response goes out: a 201 means the row is there (and its job sent).
UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]


async def get_session(work: UnitOfWorkDep) -> Session:
    """The request's session (see UnitOfWork)."""
    return await work.open()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_settings_dep(res: ResourcesDep) -> Settings:
    """The app's settings."""
    return res.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


# Ids are PostgreSQL INTEGER columns: a larger number names no row, and would overflow the driver (a 500).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
OptionalRowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]


async def identify_caller(request: Request, work: UnitOfWorkDep) -> Caller | None:
    """Who the request's credentials name; public routes are not asked for any (and open no unit of work)."""
    if auth.is_public(request):
        return None
    session = await work.open()
    return await run_in_threadpool(auth.identify, request, session)


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


async def current_user(caller: Annotated[Caller | None, Depends(guard)]) -> User:
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


def get_adapter(name: Annotated[str, Path(min_length=1, max_length=64)], session: SessionDep,
                user: CurrentUser) -> RegisteredAdapter:
    """The registered adapter named in the path if the user may see it, or 404 (a dependency: the 404 comes before
    any refusal of the body)."""
    return registry.get_adapter(session, user, name)


RunDep = Annotated[Run, Depends(get_run)]
DatasetDep = Annotated[Dataset, Depends(get_dataset)]
AdapterDep = Annotated[RegisteredAdapter, Depends(get_adapter)]


@asynccontextmanager
async def web_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The web process's start and stop: size the worker threads of sync routes (LORASTUDIO_WEB_THREADS), and
    close the live-update fan-out (app.core.live.LiveHub) at the end."""
    res: Resources = app.state.resources
    anyio.to_thread.current_default_thread_limiter().total_tokens = res.settings.web_threads
    yield
    hub, app.state.live_hub = getattr(app.state, "live_hub", None), None
    if hub is not None:
        await hub.close()
