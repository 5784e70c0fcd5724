"""Signing in and out of the pages: the login form (guarded against login CSRF) and logout; and the favicon."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app.auth import CSRF_FIELD, SESSION_COOKIE, client_address
from app.core.credentials import new_secret, same_secret
from app.core.errors import StudioError
from app.core.services import accounts, audit, web_sessions
from app.deps import SessionDep, SettingsDep
from app.login_guard import HashSlotDep, LoginGuardsDep
from app.pages.forms import FormDep
from app.pages.templating import TEMPLATES, render

router = APIRouter()
# Before there is a session, the login form is tied to this browser by a random cookie echoed in the form, so
# a page on another site cannot sign a visitor in as the attacker (login CSRF).
LOGIN_COOKIE = "lorastudio_login"
LOGIN_FORM_S = 3600
SAFE_NEXT = re.compile(r"^/(?![/\\])[^\s]*$")  # a path on this site: not //host, not /\host, no whitespace
FAVICON = TEMPLATES.parent / "static" / "favicon.svg"
MAX_NAME = 256  # a longer "username" names no account (at most 64) and is not worth echoing back
BUSY = "The studio is busy signing other people in. Try again in a few seconds."


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a local path, never another site (open redirect)."""
    return target if target and SAFE_NEXT.match(target) else "/"


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (uvicorn applies X-Forwarded-Proto from trusted proxies)."""
    return request.url.scheme == "https"


def _form(request: Request, token: str, next_url: str, username: str = "", error: str | None = None,
          status_code: int = 200) -> HTMLResponse:
    context = {"login_token": token, "next": safe_next(next_url), "username": username, "error": error}
    response = render(request, "login.html", context, status_code=status_code)
    response.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_FORM_S, httponly=True, samesite="lax",
                        secure=is_https(request), path="/login")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
    """The login form (the browser's pending login token is kept, so two open login tabs both work)."""
    return _form(request, request.cookies.get(LOGIN_COOKIE) or new_secret(), next)


@router.post("/login")
def login(request: Request, settings: SettingsDep, form: FormDep, guards: LoginGuardsDep, slot: HashSlotDep,
          session: SessionDep) -> Response:
    """Check the password (within the sign-in limits), start a browser session and go where the person was headed."""
    # The parameters are resolved in order: a sign-in waits for its password-checking slot before it takes one of
    # the database's (a queue of sign-ins must not hold the connections that everything else needs).
    token = request.cookies.get(LOGIN_COOKIE)
    if not same_secret(form.get(CSRF_FIELD), token):
        raise StudioError("forbidden", "csrf_failed", "This login form has expired or was sent from another site. "
                          "Reload the login page and sign in again.", field=CSRF_FIELD)
    username, client, next_url = form.get("username", "")[:MAX_NAME], client_address(request), form.get("next", "/")
    if not slot:
        return _refused(request, token, next_url, username, 503, BUSY, max(1, round(settings.login_wait_s)))
    refusal = guards.limits.refusal(username, client)
    if refusal is not None:
        return _refused(request, token, next_url, username, 429, refusal.message, refusal.retry_after_s)
    audit.set_origin(session, audit.Origin.web(None, client))
    user = accounts.sign_in(session, username, form.get("password", ""))
    if user is None:
        guards.limits.failed(username, client)
        limited = guards.limits.refusal(username, client)
        if limited is not None:  # this failure reached a limit: audited once, not every refused attempt after it
            audit.record(session, "login.limited", username, retry_after_s=limited.retry_after_s)
        return _form(request, token, next_url, username, "Wrong username or password.", 401)
    guards.limits.succeeded(username)
    _, cookie = web_sessions.start_session(session, user, timedelta(days=settings.session_days))
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_session_cookie(request, response, cookie, settings.session_days)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _refused(request: Request, token: str, next_url: str, username: str, status_code: int, message: str,
             retry_after_s: int) -> HTMLResponse:
    response = _form(request, token, next_url, username, message, status_code)
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def set_session_cookie(request: Request, response: Response, cookie: str, days: float) -> None:
    """The session cookie: unreadable by scripts, not sent on cross-site posts, HTTPS-only when served so."""
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(days * 86400), httponly=True, samesite="lax",
                        secure=is_https(request), path="/")


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    """End this browser's session (its row is deleted, so the cookie is worthless even if copied)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        web_sessions.end_session(session, cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The studio's icon where browsers and tools look by default; pages link /static/favicon.svg, which the
    login page can load too; public, like the static files (app.auth.PUBLIC_PATHS)."""
    return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
