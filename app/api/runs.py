"""Runs: create from a RunSpec, read, cancel, metrics, adapter download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.api.schemas import MetricOut, RunOut, TimelineEntryOut
from app.core import workers
from app.core.models import RunStatus
from app.core.repositories import runs as runs_repo
from app.core.services import deletion
from app.core.services import runs as run_service
from app.deps import MAX_ROW_ID, CurrentUser, ResourcesDep, RunDep, SessionDep
from app.downloads import adapter_zip_stream
from worker.planning.spec import RunSpec

router = APIRouter(prefix="/api/runs", tags=["runs"])


PriorityQuery = Annotated[int, Query(description="Higher starts first (default 0); users may lower their own runs' "
                                     "below 0, only admins raise one above 0 (bound: max_run_priority).")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunOut)
def create_run(spec: RunSpec, session: SessionDep, res: ResourcesDep, user: CurrentUser,
               priority: PriorityQuery = 0) -> RunOut:
    """Queue a run on one of the user's datasets; it is sent to a worker once stored (refused beyond the user's
    quotas: queued runs, storage)."""
    run = run_service.create_run(session, spec, workers.live_workers(res.redis), user=user, priority=priority,
                                 settings=res.settings)
    return RunOut.model_validate(run)


class PriorityIn(BaseModel):
    """A queued run's new priority."""

    priority: int = Field(description="Higher starts first; above 0 for admins only.")


@router.post("/{run_id}/priority", response_model=RunOut)
def set_priority(run: RunDep, body: PriorityIn, session: SessionDep, res: ResourcesDep, user: CurrentUser) -> RunOut:
    """Change a queued run's priority (an admin: any; its owner: 0 or lower)."""
    return RunOut.model_validate(run_service.set_priority(session, run, body.priority, user=user,
                                                         settings=res.settings))


@router.get("", response_model=list[RunOut])
def list_runs(session: SessionDep, user: CurrentUser, status: RunStatus | None = None) -> list[RunOut]:
    """The user's runs (an admin's: all), newest first, optionally of one status (an unknown one is a 422)."""
    return [RunOut.model_validate(r) for r in runs_repo.list_recent(session, status, user=user)]


@router.get("/{run_id}", response_model=RunOut)
def get_run(run: RunDep) -> RunOut:
    """One run."""
    return RunOut.model_validate(run)


@router.post("/{run_id}/cancel", response_model=RunOut)
def cancel_run(run: RunDep, session: SessionDep) -> RunOut:
    """Cancel a queued run now, or ask a running one to stop at the next step (the adapter so far is kept)."""
    return RunOut.model_validate(run_service.cancel_run(session, run))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_run(run: RunDep, session: SessionDep) -> Response:
    """Delete a finished run with its metrics, timeline, checkpoints and adapter (409 while it is queued or running:
    cancel it first)."""
    deletion.delete_run(session, run)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/metrics", response_model=list[MetricOut])
def run_metrics(
    run: RunDep, session: SessionDep, after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0
) -> list[MetricOut]:
    """Stored metric points with seq above `after`."""
    return [MetricOut.model_validate(p) for p in runs_repo.metric_points(session, run.id, after)]


@router.get("/{run_id}/timeline", response_model=list[TimelineEntryOut])
def run_timeline(run: RunDep, session: SessionDep) -> list[TimelineEntryOut]:
    """What happened to the run, oldest first."""
    return [TimelineEntryOut.model_validate(e) for e in runs_repo.timeline(session, run.id)]


@router.get("/{run_id}/adapter", response_class=StreamingResponse)
def download_adapter(run: RunDep, session: SessionDep, res: ResourcesDep) -> StreamingResponse:
    """The trained adapter as a zip (PEFT files, tokenizer, spec.yaml, model card), streamed."""
    files = run_service.adapter_files(session, run)
    headers = {"Content-Disposition": f'attachment; filename="run-{run.id}-adapter.zip"'}
    return StreamingResponse(adapter_zip_stream(res.session_factory, files), media_type="application/zip",
                             headers=headers)
