"""Accounts: create one, check a password, change it, and make the first admin of a fresh studio."""

from __future__ import annotations

import re
import secrets

from sqlalchemy.orm import Session

from app.core import credentials
from app.core.errors import StudioError
from app.core.models import User
from app.core.repositories import users as users_repo
from app.core.services import audit

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
FIRST_ADMIN = "admin"


def normalise_username(raw: str) -> str:
    """Usernames compare case-insensitively: they are kept lower-case, without surrounding spaces."""
    return raw.strip().lower()


def create_user(session: Session, username: str, password: str, *, is_admin: bool = False) -> User:
    """A new account; the username must be free and the password long enough."""
    name = normalise_username(username)
    if not USERNAME.match(name):
        raise StudioError("invalid", "invalid_username", "A username is 1 to 64 letters, digits, dots, dashes or "
                          "underscores, starting with a letter or digit.", field="username")
    check_password(password)
    if users_repo.by_name(session, name) is not None:
        raise StudioError("conflict", "user_exists", f"There is already a user '{name}'; choose another name.",
                          field="username")
    user = User(username=name, password_hash=credentials.hash_password(password), is_admin=is_admin)
    session.add(user)
    session.flush()
    audit.record(session, "user.create", name, is_admin=is_admin)
    return user


def check_password(password: str, field: str = "password") -> None:
    """Refuse passwords too short to resist guessing, or so long that hashing them is a burden."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StudioError("invalid", "weak_password", f"Choose a password of {MIN_PASSWORD} to {MAX_PASSWORD} "
                          "characters (a few words make a long one that is easy to remember).", field=field)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The account if the password is right; None for a wrong name or password (told apart by neither answer
    nor time)."""
    user = users_repo.by_name(session, normalise_username(username))
    ok = credentials.verify_password(password[:MAX_PASSWORD], user.password_hash if user else None)
    return user if ok else None


def sign_in(session: Session, username: str, password: str) -> User | None:
    """authenticate, with the attempt in the audit log (success or failure, under the name as typed)."""
    user = authenticate(session, username, password)
    name = normalise_username(username)[:255]
    audit.record(session, "login.success" if user else "login.failure", name, actor=user)
    return user


def set_password(session: Session, user: User, password: str, field: str = "password") -> None:
    """Give the account a new password and sign it out of every browser."""
    check_password(password, field)
    user.password_hash = credentials.hash_password(password)
    users_repo.delete_user_sessions(session, user.id)
    session.flush()
    audit.record(session, "user.set_password", user.username)


def set_admin(session: Session, user: User, is_admin: bool) -> None:
    """Make the account an admin (it sees and manages everyone's work) or take that away."""
    if user.is_admin != is_admin:
        user.is_admin = is_admin
        session.flush()
        audit.record(session, "user.set_admin", user.username, is_admin=is_admin)


def ensure_first_admin(session: Session, password: str = "") -> tuple[User, str] | None:
    """On a studio with no accounts, make the admin and return it with its password (given, or generated);
    None once any account exists, so the password is only ever shown on the first start."""
    if users_repo.count(session):
        return None
    password = password or secrets.token_urlsafe(12)
    return create_user(session, FIRST_ADMIN, password, is_admin=True), password
