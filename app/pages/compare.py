"""Compare runs: pick two or more, overlay their loss curves, and line up their spec differences."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.core.access import can_see
from app.core.models import Run
from app.core.repositories import evaluations as evaluations_repo
from app.core.repositories import runs as runs_repo
from app.deps import MAX_ROW_ID, CurrentUser, SessionDep
from app.pages.catalog_names import catalog_names
from app.pages.run_figures import spec_diff
from app.pages.templating import render

router = APIRouter()
PALETTE_SIZE = 8  # as many --series-N colours as charts.css defines
PICKABLE = 50
# Only what the compare charts draw goes into the page: the x keys and the two losses.
CHART_KEYS = ("loss", "eval_loss", "tokens_seen", "elapsed_s")
RUN_ID = re.compile(r"[0-9]{1,10}")
MAX_COMPARED = 20  # more curves than the palette tells apart twice over; each is read from the database


def palette_index(run_id: int) -> int:
    """A run's colour slot: fixed by its id, so it keeps its colour whichever runs it is compared with."""
    return run_id % PALETTE_SIZE


def _parse_ids(raw: list[str]) -> tuple[list[int], list[str]]:
    """Distinct run ids in the order given, and the values that are not ids at all."""
    ids: list[int] = []
    bad: list[str] = []
    for value in raw:
        # ASCII digits only ("²".isdigit() is true, and int() refuses it), and within a row id's range.
        if RUN_ID.fullmatch(value.strip()) and 1 <= int(value) <= MAX_ROW_ID:
            if int(value) not in ids:
                ids.append(int(value))
        elif value.strip():
            bad.append(value[:40])
    return ids, bad


def _series(session: Session, run: Run) -> dict[str, Any]:
    """A run's loss points for the charts, with its name and colour."""
    points = [{"step": p.step, **{k: p.values[k] for k in CHART_KEYS if k in p.values}}
              for p in runs_repo.metric_points(session, run.id)
              if "loss" in p.values or "eval_loss" in p.values]
    return {"id": run.id, "name": run.name, "color": palette_index(run.id), "points": points}


def _problem(ids: list[int], bad: list[str], runs: list[Run | None]) -> tuple[int, str] | None:
    """What is wrong with the request, as an HTTP status and a sentence, or None."""
    if bad:
        return 422, (f"{', '.join(repr(b) for b in bad[:5])}: run ids are whole numbers from 1 to {MAX_ROW_ID}. "
                     "Pick runs from the list below.")
    if len(ids) > MAX_COMPARED:
        return 422, f"Compare at most {MAX_COMPARED} runs at once. Pick fewer from the list below."
    missing = [f"#{i}" for i, run in zip(ids, runs, strict=True) if run is None]
    if missing:
        return 404, (f"There is no run {', '.join(missing)} (it may have been deleted). "
                     "Pick runs from the list below.")
    return None


@router.get("/runs/compare")
def compare_page(request: Request, session: SessionDep, user: CurrentUser,
                 ids: Annotated[list[str], Query()] = []) -> HTMLResponse:  # noqa: B006 (FastAPI copies defaults)
    """Two or more of the user's runs side by side; fewer, or unknown ids, show the picker with what to do."""
    run_ids, bad = _parse_ids(ids)
    # Someone else's run is as unknown here as a deleted one; too many ids are refused before any is looked up.
    wanted = run_ids if len(run_ids) <= MAX_COMPARED else []
    runs = [run if run is not None and can_see(user, run.owner_id) else None
            for run in (runs_repo.get(session, run_id) for run_id in wanted)]
    context: dict[str, Any] = {"nav": "compare", "names": catalog_names(session, user), "selected": run_ids,
                               "recent": runs_repo.list_recent(session, limit=PICKABLE, user=user),
                               "palette": palette_index}
    problem = _problem(run_ids, bad, runs)
    if problem:
        status, message = problem
        return render(request, "runs/compare.html", {**context, "problem": message}, status_code=status)
    found = [run for run in runs if run is not None]
    if len(found) < 2:
        return render(request, "runs/compare.html", {**context, "too_few": bool(found)})
    context |= {"runs": found, "diff": spec_diff([run.spec for run in found]),
                "series": [_series(session, run) for run in found],
                "evaluations": _evaluations(session, found)}
    return render(request, "runs/compare.html", context)


def _evaluations(session: Session, runs: list[Run]) -> dict[str, Any]:
    """Each run's latest succeeded evaluation (None for a run without one) and the scorers any of them used."""
    latest = evaluations_repo.latest_succeeded_for_runs(session, [run.id for run in runs])
    by_run = {run.id: latest.get(run.id) for run in runs}
    scorers = list(dict.fromkeys(name for e in by_run.values() if e is not None
                                 for name in (e.summary.get("main") or {}).get("scorers", {})))
    return {"by_run": by_run, "scorers": scorers}
