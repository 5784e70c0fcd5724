"""Runs: the list (with sparklines, ETAs and an auto-refreshing table), one run's live page, and cancel."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from app.core.errors import StudioError
from app.core.models import BaseModelEntry, Dataset, Run, RunStatus, User
from app.core.repositories import runs as runs_repo
from app.core.services import runs as run_service
from app.deps import CurrentUser, RunDep, SessionDep
from app.pages.catalog_names import catalog_names
from app.pages.run_figures import Sparkline, duration, eta_seconds, sparkline
from app.pages.templating import render

router = APIRouter()
STATUSES = [s.value for s in RunStatus]
# The table is polled every 3 s: a finished run's points never change, so its sparkline is drawn once.
_finished_sparklines: dict[tuple[int, str], Sparkline | None] = {}
_CACHE_LIMIT = 1000


def _sparkline(session: Session, run: Run) -> Sparkline | None:
    key = (run.id, run.created_at.isoformat())
    if key in _finished_sparklines:
        return _finished_sparklines[key]
    points = runs_repo.metric_points(session, run.id)
    line = sparkline([p.values["loss"] for p in points if isinstance(p.values.get("loss"), int | float)])
    if run.run_status.finished and len(_finished_sparklines) < _CACHE_LIMIT:
        _finished_sparklines[key] = line
    return line


def _table_context(session: Session, user: User, status: str | None) -> dict[str, Any]:
    status = status if status in STATUSES else None
    runs = runs_repo.list_recent(session, status, user=user)
    return {"runs": runs, "names": catalog_names(session, user), "status": status, "statuses": STATUSES,
            "sparklines": {run.id: _sparkline(session, run) for run in runs},
            "etas": {run.id: duration(eta) for run in runs if (eta := eta_seconds(run)) is not None}}


@router.get("/")
def runs_page(request: Request, session: SessionDep, user: CurrentUser, status: str | None = None) -> HTMLResponse:
    """The user's runs (an admin's: all), newest first, optionally of one status."""
    return render(request, "runs/list.html", {"nav": "runs", **_table_context(session, user, status)})


@router.get("/runs/table")
def runs_table(request: Request, session: SessionDep, user: CurrentUser, status: str | None = None) -> HTMLResponse:
    """The runs table alone, polled by htmx to keep the list current."""
    return render(request, "runs/_table.html", _table_context(session, user, status))


def _run_context(session: Session, run: Run) -> dict[str, Any]:
    return {"run": run, "model": session.get(BaseModelEntry, run.base_model_id),
            "dataset": session.get(Dataset, run.dataset_id), "finished": run.run_status.finished,
            "has_adapter": bool(runs_repo.artifacts(session, run.id)), "events": runs_repo.timeline(session, run.id),
            "spec_yaml": yaml.safe_dump(run.spec, sort_keys=False)}


@router.get("/runs/{run_id}")
def run_page(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """One run: facts, spec, timeline, live charts and progress."""
    return render(request, "runs/detail.html", {"nav": "runs", **_run_context(session, run)})


@router.get("/runs/{run_id}/summary")
def run_summary(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's status, outcome and actions alone, fetched again when the live stream reports the end."""
    return render(request, "runs/_summary.html", _run_context(session, run))


@router.get("/runs/{run_id}/details")
def run_details(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's facts alone (device, worker, times), fetched again when the run starts or ends."""
    return render(request, "runs/_details.html", _run_context(session, run))


@router.get("/runs/{run_id}/timeline")
def run_timeline(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's timeline alone, fetched again when the live stream reports a new status."""
    return render(request, "runs/_timeline.html", {"events": runs_repo.timeline(session, run.id)})


@router.post("/runs/{run_id}/cancel")
def cancel(run: RunDep, session: SessionDep) -> RedirectResponse:
    """Cancel or ask to stop, then back to the run (which shows the outcome)."""
    try:
        run_service.cancel_run(session, run)
    except StudioError as exc:
        if exc.code != "run_finished":
            raise
        # It ended while the button was on screen: its page already tells how.
    return RedirectResponse(f"/runs/{run.id}", status_code=303)
