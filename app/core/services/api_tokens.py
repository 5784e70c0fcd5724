"""API tokens for the REST API and the CLI: made once and shown once, kept as a sha256, revocable, deletable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.core import credentials
from app.core.access import can_see
from app.core.db import as_utc, utcnow
from app.core.errors import StudioError
from app.core.models import ApiToken, User
from app.core.repositories import users as users_repo
from app.core.services import audit

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
    audit.record(session, "token.create", f"token {token.id} of {user.username}", name=name, prefix=token.prefix)
    return token, plaintext


def user_for_token(session: Session, plaintext: str) -> User | None:
    """The account a live token belongs to; None for an unknown or revoked one."""
    token = users_repo.token_by_hash(session, credentials.digest(plaintext))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - as_utc(token.last_used_at) > USE_RESOLUTION:
        _record_use_at_commit(session, token.id, now)
    return session.get(User, token.user_id)


def _record_use_at_commit(session: Session, token_id: int, now: datetime) -> None:
    """Write last_used_at as the request's unit of work commits, not now: flushed at the next query, the UPDATE
    would hold SQLite's one write lock for the rest of the request (a large upload's whole receive and check,
    while every other writer waits). A request that ends in a rollback is not recorded as a use."""
    def write(committing: Session) -> None:
        committing.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
                           .execution_options(synchronize_session=False))

    event.listen(session, "before_commit", write, once=True)


def list_tokens(session: Session, user: User | None = None) -> Sequence[ApiToken]:
    """A user's tokens (everyone's for an internal caller), newest first."""
    return users_repo.tokens_of(session, user.id if user is not None else None)


def revoke_token(session: Session, token_id: int, user: User | None = None) -> ApiToken:
    """Revoke a token at once; someone else's token is not found (an admin may revoke anyone's)."""
    token = _visible_token(session, token_id, user)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
        audit.record(session, "token.revoke", f"token {token.id}", name=token.name, prefix=token.prefix,
                     owner_id=token.user_id)
    return token


def delete_token(session: Session, token_id: int, user: User | None = None) -> None:
    """Delete a token's row, so it no longer lists (revoked ones pile up otherwise); a live token stops working
    with it. Someone else's token is not found, as for revoke (an admin may delete anyone's)."""
    token = _visible_token(session, token_id, user)
    session.delete(token)
    session.flush()
    audit.record(session, "token.delete", f"token {token.id} '{token.name}'", prefix=token.prefix,
                 owner_id=token.user_id, was_revoked=token.revoked_at is not None)


def _visible_token(session: Session, token_id: int, user: User | None) -> ApiToken:
    """The token, if user may manage it: another user's is not found, so its existence is not given away."""
    token = session.get(ApiToken, token_id)
    if token is None or not can_see(user, token.user_id):
        raise StudioError("not_found", "token_not_found", f"There is no token {token_id} of yours; your tokens are on "
                          "the Account page (their ids in `lorastudio tokens list`).")
    return token
