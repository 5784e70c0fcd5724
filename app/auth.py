"""Who is asking: an API token (`Authorization: Bearer …`) or a browser's session cookie, and the CSRF rule for
cookie requests. Every route needs one of them except the short PUBLIC_PATHS list (see deps.guard)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session

from app.core.credentials import same_secret
from app.core.errors import StudioError
from app.core.models import User
from app.core.services import api_tokens, audit, web_sessions

SESSION_COOKIE = "lorastudio_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# What anyone may reach: signing in, the probes of load balancers and orchestrators, and the static files
# (mounted outside the routes). Everything else, pages and API alike, needs a signed-in user.
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/readyz", "/favicon.ico"})
PUBLIC_MOUNTS = frozenset({"/static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
HOW_TO_SIGN_IN = ("Log in at /login, or send 'Authorization: Bearer <token>' with an API token (make one on the "
                  "Account page or with `lorastudio tokens create USERNAME`).")


@dataclass(frozen=True)
class Caller:
    """The signed-in user of a request, and the session's CSRF token when it came with a cookie."""

    user: User
    csrf_token: str | None  # None for API tokens: a browser never sends those by itself, so no CSRF risk
    # Copied out of the row: error pages render after the request's session rolled back and let go of it.
    username: str
    is_admin: bool

    @classmethod
    def of(cls, user: User, csrf_token: str | None = None) -> Caller:
        """The caller for a user found by token (no CSRF token) or by session cookie."""
        return cls(user, csrf_token, user.username, user.is_admin)


def is_public(request: Request) -> bool:
    """Whether the request is for a public route (they take no path parameters, so the path names them)."""
    return request.url.path in PUBLIC_PATHS


def not_signed_in() -> StudioError:
    """The 401 of a request without credentials (pages turn it into a redirect to /login)."""
    return StudioError("unauthenticated", "not_signed_in", f"Sign in first. {HOW_TO_SIGN_IN}")


def identify(request: Request, session: Session) -> Caller | None:
    """The caller a bearer token or session cookie names; None without either; 401 for a bad token."""
    caller = _caller(request, session)
    # What this request's services do is audited under this user and address (app.core.services.audit).
    audit.set_origin(session, audit.Origin.web(caller.user if caller else None, client_address(request)))
    return caller


def _caller(request: Request, session: Session) -> Caller | None:
    header = request.headers.get("authorization")
    if header is not None:
        return Caller.of(_token_user(session, header))
    cookie = request.cookies.get(SESSION_COOKIE)
    found = web_sessions.find_session(session, cookie) if cookie else None
    return Caller.of(found[1], found[0].csrf_token) if found else None


def client_address(request: Request) -> str:
    """The client's address (uvicorn applies X-Forwarded-For from the proxies it trusts)."""
    return request.client.host if request.client else "unknown"


def _token_user(session: Session, header: str) -> User:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise StudioError("unauthenticated", "bad_authorization", "Send the API token as 'Authorization: Bearer "
                          "<token>'.", field="Authorization")
    user = api_tokens.user_for_token(session, token.strip())
    if user is None:
        raise StudioError("unauthenticated", "invalid_token", "This API token is unknown or was revoked; make a "
                          "new one on the Account page or with `lorastudio tokens create USERNAME`.",
                          field="Authorization")
    return user


async def check_csrf(request: Request, caller: Caller) -> None:
    """A cookie request that changes something must send the session's CSRF token (header or form field)."""
    if caller.csrf_token is None or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER) or await _form_token(request)
    if not same_secret(sent, caller.csrf_token):
        raise csrf_refused()


def csrf_refused() -> StudioError:
    """The 403 of a form or request that did not come from a studio page."""
    return StudioError("forbidden", "csrf_failed", "This request did not carry the page's security token (it may "
                       "come from another site, or the page is older than your login). Reload the page and send it "
                       f"again; scripts send the {CSRF_HEADER} header or use an API token.", field=CSRF_FIELD)


async def _form_token(request: Request) -> str | None:
    if not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return None
    # Starlette keeps the parsed form on the request, so the route reads it again for free.
    form = await request.form(max_files=1)
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None
