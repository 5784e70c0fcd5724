"""Signing in and out of the pages: the login form (guarded against login CSRF) and logout."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import CSRF_FIELD, SESSION_COOKIE
from app.core.credentials import new_secret, same_secret
from app.core.errors import StudioError
from app.core.services import accounts, web_sessions
from app.deps import SessionDep, SettingsDep
from app.pages.forms import FormDep
from app.pages.templating import render

router = APIRouter()
# Before there is a session, the login form is tied to this browser by a random cookie echoed in the form, so
# a page on another site cannot sign a visitor in as the attacker (login CSRF).
LOGIN_COOKIE = "lorastudio_login"
LOGIN_FORM_S = 3600
SAFE_NEXT = re.compile(r"^/(?![/\\])[^\s]*$")  # a path on this site: not //host, not /\host, no whitespace


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
def login(request: Request, session: SessionDep, settings: SettingsDep, form: FormDep) -> Response:
    """Check the password, start a browser session and go where the person was headed."""
    token = request.cookies.get(LOGIN_COOKIE)
    if not same_secret(form.get(CSRF_FIELD), token):
        raise StudioError("forbidden", "csrf_failed", "This login form has expired or was sent from another site. "
                          "Reload the login page and sign in again.", field=CSRF_FIELD)
    username = form.get("username", "")
    user = accounts.authenticate(session, username, form.get("password", ""))
    if user is None:
        return _form(request, token, form.get("next", "/"), username, "Wrong username or password.", 401)
    _, cookie = web_sessions.start_session(session, user, timedelta(days=settings.session_days))
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_session_cookie(request, response, cookie, settings.session_days)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
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
