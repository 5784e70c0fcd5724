"""The signed-in user's account: API tokens (made and shown once, revoked, deleted) and the password."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.errors import HTTP_STATUS as STATUS
from app.core.errors import StudioError
from app.core.models import User
from app.core.services import accounts, api_tokens, quotas, web_sessions
from app.deps import CurrentUser, RowId, SessionDep, SettingsDep
from app.pages.forms import FormDep
from app.pages.login import set_session_cookie
from app.pages.templating import render

router = APIRouter()


def _page(request: Request, session: Session, user: User, *, new_token: str | None = None,
          error: StudioError | None = None, notice: str | None = None) -> HTMLResponse:
    context = {"nav": "account", "tokens": api_tokens.list_tokens(session, user), "new_token": new_token,
               "error": error, "notice": notice, "quotas": _quotas(session, user, request)}
    response = render(request, "account.html", context, status_code=STATUS[error.kind] if error else 200)
    response.headers["Cache-Control"] = "no-store"  # a fresh token is on it; no cache should keep a copy
    return response


def _quotas(session: Session, user: User, request: Request) -> list[dict[str, str]]:
    """The user's quotas as rows: what, used, limit."""
    limits = quotas.limits_of(user, request.app.state.resources.settings)
    usage = quotas.usage_of(session, user)
    rows = (("Queued runs", usage.queued_runs, limits.queued_runs, str),
            ("Runs training at once", usage.running_runs, limits.running_runs, str),
            ("Storage", usage.storage_bytes, limits.storage_bytes, quotas.format_bytes))
    return [{"what": what, "used": show(used), "limit": "no limit" if limit is None else show(limit)}
            for what, used, limit, show in rows]


@router.get("/account")
def account_page(request: Request, session: SessionDep, user: CurrentUser) -> HTMLResponse:
    """The user's tokens and the password form."""
    return _page(request, session, user)


@router.post("/account/tokens")
def create_token(request: Request, session: SessionDep, user: CurrentUser, form: FormDep) -> HTMLResponse:
    """Make an API token and show it this once (only its hash is kept)."""
    try:
        _, plaintext = api_tokens.create_token(session, user, form.get("name", ""))
    except StudioError as error:
        return _page(request, session, user, error=error)
    return _page(request, session, user, new_token=plaintext)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: RowId, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Revoke one of the user's tokens; it stops working at once."""
    api_tokens.revoke_token(session, token_id, user=user)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/tokens/{token_id}/delete")
def delete_token(token_id: RowId, session: SessionDep, user: CurrentUser) -> RedirectResponse:
    """Delete one of the user's tokens (the page offers it once revoked), so the list keeps only what matters."""
    api_tokens.delete_token(session, token_id, user=user)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/password")
def change_password(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser,
                    form: FormDep) -> Response:
    """Change the password (the current one is asked again); every other browser is signed out."""
    if accounts.authenticate(session, user.username, form.get("current_password", "")) is None:
        error = StudioError("invalid", "wrong_password", "The current password is not right.",
                            field="current_password")
        return _page(request, session, user, error=error)
    try:
        accounts.set_password(session, user, form.get("new_password", ""), field="new_password")
    except StudioError as error:
        return _page(request, session, user, error=error)
    # set_password ended every session, this one too: keep this browser signed in with a fresh one.
    _, cookie = web_sessions.start_session(session, user, timedelta(days=settings.session_days))
    response = RedirectResponse("/account?changed=1", status_code=303)
    set_session_cookie(request, response, cookie, settings.session_days)
    return response
