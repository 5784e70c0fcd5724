"""Browser sessions: started by a login, found by the cookie's sha256, ended by logout or expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.core import credentials
from app.core.db import as_utc, utcnow
from app.core.models import User, WebSession
from app.core.repositories import users as users_repo
from app.core.services import audit


def start_session(session: Session, user: User, lifetime: timedelta) -> tuple[WebSession, str]:
    """A new session for user and the cookie value that names it (only its sha256 is stored)."""
    users_repo.delete_expired_sessions(session, utcnow())  # logins are rare enough to tidy up on
    cookie = credentials.new_secret()
    web_session = WebSession(user_id=user.id, session_hash=credentials.digest(cookie),
                             csrf_token=credentials.new_secret(), expires_at=utcnow() + lifetime)
    session.add(web_session)
    session.flush()
    return web_session, cookie


def find_session(session: Session, cookie: str) -> tuple[WebSession, User] | None:
    """The live session a cookie names and its user; None when unknown or expired."""
    web_session = users_repo.session_by_hash(session, credentials.digest(cookie))
    if web_session is None or as_utc(web_session.expires_at) <= utcnow():
        return None
    user = session.get(User, web_session.user_id)
    return (web_session, user) if user is not None else None


def end_session(session: Session, cookie: str) -> None:
    """Sign this browser out (nothing happens for an unknown cookie)."""
    web_session = users_repo.session_by_hash(session, credentials.digest(cookie))
    if web_session is not None:
        user = session.get(User, web_session.user_id)
        session.delete(web_session)
        session.flush()
        audit.record(session, "logout", user.username if user else "", actor=user)

