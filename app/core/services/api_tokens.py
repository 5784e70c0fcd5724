"""API tokens for the REST API and the CLI: made once and shown once, kept as a sha256, revocable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from app.core import credentials
from app.core.access import can_see
from app.core.db import as_utc, utcnow
from app.core.errors import StudioError, not_found
from app.core.models import ApiToken, User
from app.core.repositories import users as users_repo

PREFIX = "lst_"  # recognisable in a leaked config file or a secret scanner's rules
SHOWN_CHARS = 12  # "lst_" and 8 characters: enough to tell tokens apart, useless to an attacker
# last_used_at is a hint for people, not an audit log: written at most this often, so reads stay reads.
USE_RESOLUTION = timedelta(minutes=1)


def create_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new token for user, and its plaintext (which is not kept: show it now or never)."""
    name = name.strip() or "token"
    if len(name) > 100:
        raise StudioError("invalid", "token_name_too_long", "Give the token a name of at most 100 characters.",
                          field="name")
    plaintext = credentials.new_secret(PREFIX)
    token = ApiToken(user_id=user.id, name=name, prefix=plaintext[:SHOWN_CHARS],
                     token_hash=credentials.digest(plaintext))
    session.add(token)
    session.flush()
    return token, plaintext


def user_for_token(session: Session, plaintext: str) -> User | None:
    """The account a live token belongs to; None for an unknown or revoked one."""
    token = users_repo.token_by_hash(session, credentials.digest(plaintext))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - as_utc(token.last_used_at) > USE_RESOLUTION:
        token.last_used_at = now
    return session.get(User, token.user_id)


def list_tokens(session: Session, user: User | None = None) -> Sequence[ApiToken]:
    """A user's tokens (everyone's for an internal caller), newest first."""
    return users_repo.tokens_of(session, user.id if user is not None else None)


def revoke_token(session: Session, token_id: int, user: User | None = None) -> ApiToken:
    """Revoke a token at once; someone else's token is not found (an admin may revoke anyone's)."""
    token = session.get(ApiToken, token_id)
    if token is None or not can_see(user, token.user_id):
        raise not_found("token", token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return token
