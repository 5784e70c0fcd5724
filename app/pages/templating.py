"""The Jinja2 environment the pages render with, and its display filters."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).resolve().parents[2] / "frontend" / "templates"
CELL_CHARS = 240


def when(value: datetime | None) -> str:
    """A timestamp to the minute, or a dash."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def filesize(size: int | None) -> str:
    """Bytes in the largest unit that keeps the number above 1."""
    if size is None:
        return "—"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def cell(value: Any) -> str:
    """A preview cell: text as is, structures as compact JSON, both cut to a readable length."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def loss(value: float | None) -> str:
    """A loss with four decimals, or a dash."""
    return "—" if value is None else f"{value:.4f}"


def signed_in(request: Request) -> dict[str, Any]:
    """What every page shows of the caller: the user (topbar) and the session's CSRF token (every form)."""
    caller = getattr(request.state, "caller", None)
    return {"current_user": caller,  # .username and .is_admin
            "csrf_token": (caller.csrf_token or "") if caller else ""}


templates = Jinja2Templates(directory=TEMPLATES, context_processors=[signed_in])
templates.env.filters.update(when=when, filesize=filesize, cell=cell, loss=loss)


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> HTMLResponse:
    """Render a template with the request in its context."""
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)
