"""The playground: one prompt sent to two or three models (bases or the caller's adapters) side by side, with the
same sampling settings and seed; its whole setup lives in the page's query string, so its URL can be shared.

The page only renders the form; frontend/static/js/playground.js streams each column from /api/playground/stream
(app/api/playground.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from app.core.generation import catalog
from app.core.generation import protocol as p
from app.core.models import User
from app.core.repositories import runs as runs_repo
from app.deps import CurrentUser, SessionDep
from app.pages.catalog_names import catalog_names
from app.pages.templating import render

router = APIRouter()
MAX_COLUMNS = 3
MIN_COLUMNS = 2
NUMBER_CHARS = 40  # a number field's value from the URL, as typed (the browser and the API check it)
MODEL_CHARS = 300
# The form's values when the URL leaves them out: short greedy answers, reproducible by default.
DEFAULTS = {"max_tokens": "128", "temperature": "0", "top_p": "1", "seed": "0"}


@dataclass(frozen=True)
class Choice:
    """A model the caller may pick: its id (a base's name or `run-<id>`) and how the picker shows it."""

    id: str
    label: str
    adapter: bool


@dataclass(frozen=True)
class Column:
    """One column of the page: the model picked, and whether the caller may use it."""

    index: int
    model: str
    available: bool
    shown: bool


@dataclass(frozen=True)
class Setup:
    """What the query string says: models, system prompt, sampling, seed and the first message (all as text)."""

    models: tuple[str, ...]
    system: str
    prompt: str
    stop: tuple[str, ...]
    numbers: dict[str, str]

    @classmethod
    def of(cls, query: QueryParams) -> Setup:
        """Read leniently: a value out of bounds is clipped here and refused by the stream, never a page error."""
        numbers = {key: query.get(key, default)[:NUMBER_CHARS] for key, default in DEFAULTS.items()}
        return cls(models=tuple(m[:MODEL_CHARS] for m in query.getlist("model") if m.strip())[:MAX_COLUMNS],
                   system=query.get("system", "")[:p.MAX_PROMPT_CHARS],
                   prompt=query.get("prompt", "")[:p.MAX_PROMPT_CHARS],
                   stop=tuple(s[:p.MAX_STOP_CHARS] for s in query.getlist("stop") if s)[:p.MAX_STOP],
                   numbers=numbers)


def choices(session: Session, user: User) -> list[Choice]:
    """The registered bases, then the caller's adapters labelled with their run's name and base."""
    cards = catalog.list_models(session, user)
    adapters = {card.id: parsed for card in cards if (parsed := catalog.parse_adapter_id(card.id))}
    runs = {run.id: run for run in runs_repo.get_many(session, {run_id for run_id, _ in adapters.values()})}
    names = catalog_names(session, user)
    found = []
    for card in cards:
        run_id, step = adapters.get(card.id, (None, None))
        run = runs.get(run_id) if run_id is not None else None
        what = "adapter" if step is None else f"step {step}"
        label = f"{run.name} · #{run.id} ({what} on {names.model(run.base_model_id)})" if run else card.id
        found.append(Choice(card.id, label, card.adapter))
    return found


def columns(setup: Setup, found: list[Choice]) -> list[Column]:
    """MAX_COLUMNS columns, the first two (or three) shown: the URL's models, else a base beside the newest adapter."""
    ids = [c.id for c in found]
    bases, adapters = [c.id for c in found if not c.adapter], [c.id for c in found if c.adapter]
    default = (bases[:1] + (adapters[:1] or bases[1:2] or bases[:1])) or ["", ""]
    picked = list(setup.models) or default
    shown = max(MIN_COLUMNS, len(setup.models))
    picked += [picked[0] if picked else ""] * (MAX_COLUMNS - len(picked))
    return [Column(i, model, not model or model in ids, i < shown) for i, model in enumerate(picked)]


@router.get("/playground")
def playground_page(request: Request, session: SessionDep, user: CurrentUser) -> HTMLResponse:
    """The playground, set up from the query string (models, system, sampling, seed, prompt)."""
    setup = Setup.of(request.query_params)
    found = choices(session, user)
    context: dict[str, Any] = {"nav": "playground", "setup": setup, "choices": found,
                               "columns": columns(setup, found), "limits": _limits()}
    return render(request, "playground/page.html", context)


def _limits() -> dict[str, Any]:
    """The protocol's bounds, for the form's own checks (the stream checks them again)."""
    return {"max_tokens": p.MAX_NEW_TOKENS, "stop": p.MAX_STOP, "stop_chars": p.MAX_STOP_CHARS,
            "prompt_chars": p.MAX_PROMPT_CHARS}
