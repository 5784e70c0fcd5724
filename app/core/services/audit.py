"""The audit log: services record sign-ins, tokens, account changes and local model folders in the same unit of
work as the action, so an action and its entry are committed (or rolled back) together.

Who acts and from where travels with the unit of work (`session.info`): the web sets it when it identifies the
caller (app.auth) or on the login form, the management CLI sets "cli"; a service names only what it did.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import StudioError
from app.core.models import AuditEntry, User
from app.core.repositories import audit as audit_repo

ORIGIN_KEY = "audit_origin"
MAX_LIST = 1000


@dataclass(frozen=True)
class Origin:
    """Who is acting (None: nobody signed in yet, or the host's CLI) and from which client address."""

    user_id: int | None
    name: str
    client: str

    @classmethod
    def web(cls, user: User | None, client: str) -> Origin:
        """A web request: the signed-in user (if any) and the client's address."""
        return cls(user.id if user else None, user.username if user else "", client[:64])

    @classmethod
    def cli(cls) -> Origin:
        """A management command on the studio's host: the operating-system account that ran it."""
        return cls(None, f"cli:{getpass.getuser()}"[:64], "cli")


SYSTEM = Origin(None, "system", "")


def set_origin(session: Session, origin: Origin) -> None:
    """Name who acts in this unit of work; every entry it records carries it."""
    session.info[ORIGIN_KEY] = origin


def origin_of(session: Session) -> Origin:
    """The unit of work's origin; an internal caller (worker, test) is "system"."""
    return session.info.get(ORIGIN_KEY, SYSTEM)


def record(session: Session, action: str, target: str = "", actor: User | None = None,
           **details: Any) -> AuditEntry:
    """Add an entry (flushed with the action's own rows); actor overrides the origin's user (a login)."""
    origin = origin_of(session)
    user_id, name = (actor.id, actor.username) if actor is not None else (origin.user_id, origin.name)
    entry = AuditEntry(actor_user_id=user_id, actor=name[:64], action=action, target=target[:255],
                       client=origin.client, details=details)
    session.add(entry)
    session.flush()
    return entry


def list_entries(session: Session, user: User | None, *, limit: int = 100, action: str | None = None,
                 before_id: int | None = None) -> Sequence[AuditEntry]:
    """The newest entries first (admins and internal callers only), optionally of one action or older than an id."""
    if user is not None and not user.is_admin:
        raise StudioError("forbidden", "admin_only", "Only an admin may read the audit log.")
    if not 1 <= limit <= MAX_LIST:
        raise StudioError("invalid", "invalid_limit", f"Ask for 1 to {MAX_LIST} entries.", field="limit")
    return audit_repo.newest(session, limit, action, before_id)
