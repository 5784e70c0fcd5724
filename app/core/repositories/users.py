"""Queries on users, API tokens and web sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.core.models import ApiToken, User, WebSession


def count(session: Session) -> int:
    """How many accounts exist."""
    return session.scalar(select(func.count()).select_from(User)) or 0


def by_name(session: Session, username: str) -> User | None:
    """The account with this (lower-case) username."""
    return session.scalars(select(User).where(User.username == username)).first()


def list_all(session: Session) -> Sequence[User]:
    """Every account by username."""
    return session.scalars(select(User).order_by(User.username)).all()


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """The API token whose sha256 this is, revoked or not."""
    return session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def tokens_of(session: Session, user_id: int | None) -> Sequence[ApiToken]:
    """A user's API tokens (everyone's when user_id is None), newest first."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    return session.scalars(query if user_id is None else query.where(ApiToken.user_id == user_id)).all()


def session_by_hash(session: Session, session_hash: str) -> WebSession | None:
    """The browser session whose cookie hashes to this."""
    return session.scalars(select(WebSession).where(WebSession.session_hash == session_hash)).first()


def delete_user_sessions(session: Session, user_id: int) -> None:
    """Sign a user out of every browser."""
    session.execute(delete(WebSession).where(WebSession.user_id == user_id)
                    .execution_options(synchronize_session=False))


def delete_expired_sessions(session: Session, now: datetime) -> None:
    """Forget browser sessions that expired before now."""
    session.execute(delete(WebSession).where(WebSession.expires_at < now)
                    .execution_options(synchronize_session=False))
