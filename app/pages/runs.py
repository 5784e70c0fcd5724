"""Runs: the list (with sparklines, ETAs and an auto-refreshing table), one run's live page (with its clock), and
cancel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from app.core import workers
from app.core.errors import StudioError
from app.core.generation import catalog
from app.core.models import BaseModelEntry, Dataset, MetricPoint, Run, RunStatus, User
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import runs as runs_repo
from app.core.services import deletion, learning
from app.core.services import runs as run_service
from app.core.services import samples as sample_service
from app.deps import CurrentUser, RunDep, SessionDep
from app.pages.catalog_names import catalog_names
from app.pages.run_figures import (
    RATE_WINDOW,
    Sparkline,
    duration,
    elapsed_seconds,
    eta_seconds,
    run_clock,
    sparkline,
)
from app.pages.sample_diff import timelines
from app.pages.templating import render

router = APIRouter()
STATUSES = [s.value for s in RunStatus]
# The table is polled every 3 s: a finished run's points never change, so its sparkline is drawn once.
_finished_sparklines: dict[tuple[int, str], Sparkline | None] = {}
_CACHE_LIMIT = 1000
MAX_STEP_LINKS = 12  # the run page links the newest kept steps; /v1/models lists them all


def _sparkline(session: Session, run: Run) -> Sparkline | None:
    key = (run.id, run.created_at.isoformat())
    if key in _finished_sparklines:
        return _finished_sparklines[key]
    points = runs_repo.metric_points(session, run.id)
    line = sparkline([p.values["loss"] for p in points if isinstance(p.values.get("loss"), int | float)])
    if run.run_status.finished and len(_finished_sparklines) < _CACHE_LIMIT:
        _finished_sparklines[key] = line
    return line


def _recent_points(session: Session, run: Run) -> Sequence[MetricPoint]:
    """A running run's last few points, enough for its recent step rate (none for other runs: no ETA to tell)."""
    if run.status != RunStatus.running:
        return []
    # Evaluations interleave with train logs: read a few seqs more than the window of train logs.
    return runs_repo.metric_points(session, run.id, max(0, run.metric_seq - 3 * RATE_WINDOW))


def _table_context(session: Session, user: User, status: str | None) -> dict[str, Any]:
    status = status if status in STATUSES else None
    runs = runs_repo.list_recent(session, status, user=user)
    return {"runs": runs, "names": catalog_names(session, user), "status": status, "statuses": STATUSES,
            "sparklines": {run.id: _sparkline(session, run) for run in runs},
            "etas": {run.id: duration(eta) for run in runs
                     if (eta := eta_seconds(run, _recent_points(session, run))) is not None},
            "durations": {run.id: duration(took) for run in runs if (took := elapsed_seconds(run)) is not None}}


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
            "step_links": _step_links(session, run),
            "spec_yaml": yaml.safe_dump(run.spec, sort_keys=False),
            "clock": run_clock(run, _recent_points(session, run)), "learning": _learning(session, run)}


def _step_links(session: Session, run: Run) -> dict[str, Any]:
    """Playground links comparing the base with the final adapter ("final") and with each kept step's ("steps":
    (step, link), the newest MAX_STEP_LINKS)."""
    base = session.get(BaseModelEntry, run.base_model_id)
    if base is None:
        return {"final": None, "steps": []}

    def link(model_id: str) -> str:
        return "/playground?" + urlencode([("model", base.name), ("model", model_id)])

    steps = artifacts_repo.stored_steps(session, run.id)[-MAX_STEP_LINKS:]
    final = link(catalog.adapter_model_id(run.id)) if runs_repo.artifacts(session, run.id) else None
    return {"final": final, "steps": [(step, link(catalog.adapter_model_id(run.id, step))) for step in steps]}


def _learning(session: Session, run: Run) -> learning.Verdict | None:
    """The under-training notice of an ended run, with the stronger settings of its one-click clone."""
    if not run.run_status.finished:
        return None
    dataset = session.get(Dataset, run.dataset_id)
    return learning.verdict(session, run, dataset.row_count) if dataset else None


def _samples_context(session: Session, run: Run) -> dict[str, Any]:
    """The Samples section: per prompt, its answers with the words that changed marked, and what sampling cost."""
    found = sample_service.run_samples(session, run.id)
    budget = run.spec.get("samples", {}).get("budget") if isinstance(run.spec, dict) else None
    return {"run": run, "samples": found, "sample_timelines": timelines(found), "no_effect": sample_service.NO_EFFECT,
            "budget": budget}


@router.get("/runs/{run_id}")
def run_page(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """One run: facts, spec, timeline, live charts, progress and samples."""
    return render(request, "runs/detail.html",
                  {"nav": "runs", **_run_context(session, run), **_samples_context(session, run)})


@router.get("/runs/{run_id}/samples")
def run_samples(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's Samples section alone."""
    return render(request, "runs/_samples.html", _samples_context(session, run))


@router.get("/runs/{run_id}/summary")
def run_summary(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's status, outcome and actions alone, fetched again when the live stream reports the end."""
    return render(request, "runs/_summary.html", _run_context(session, run))


@router.get("/runs/{run_id}/details")
def run_details(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's facts alone (device, worker, times), fetched again when the run starts or ends."""
    return render(request, "runs/_details.html", _run_context(session, run))


@router.get("/runs/{run_id}/clock")
def run_clock_part(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's elapsed time and ETA alone, fetched again as the live stream reports new steps."""
    return render(request, "runs/_clock.html", {"clock": run_clock(run, _recent_points(session, run))})


@router.get("/runs/{run_id}/timeline")
def run_timeline(request: Request, run: RunDep, session: SessionDep) -> HTMLResponse:
    """The run's timeline alone, fetched again when the live stream reports a new status."""
    return render(request, "runs/_timeline.html", {"events": runs_repo.timeline(session, run.id)})


@router.post("/runs/{run_id}/clone-stronger")
def clone_stronger(request: Request, run: RunDep, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Queue a copy of a run that learned little, with the stronger settings its notice names; then show it."""
    verdict = _learning(session, run)
    if verdict is None:
        raise StudioError("conflict", "run_learned", "This run's losses moved as expected; clone it from the "
                          "designer to change its settings.")
    spec = verdict.stronger.model_copy(update={"name": run_service.clone_name(session, run, user=user)})
    clone = run_service.create_run(session, spec, workers.live_workers(request.app.state.resources.redis), user=user)
    run_service.add_to_timeline(session, clone.id, "cloned", f"Cloned from run {run.id} with stronger settings: "
                                f"{', '.join(verdict.changes)}.")
    return RedirectResponse(f"/runs/{clone.id}", status_code=303)


@router.post("/runs/{run_id}/delete")
def delete(run: RunDep, session: SessionDep) -> RedirectResponse:
    """Delete a finished run and all it stored, then back to the list (a queued or running one: 409 page)."""
    deletion.delete_run(session, run)
    return RedirectResponse("/", status_code=303)


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
