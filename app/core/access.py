"""Who sees what: an owned object is visible to its owner and to admins.

Services take the signed-in user as `user`; None means an internal caller (a worker, `lorastudio train`, a
test) that sees everything. The web always passes the user it authenticated.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select

from app.core.models import User

Q = TypeVar("Q", bound=Select[Any])


def sees_everything(user: User | None) -> bool:
    """Admins and internal callers are not limited to their own objects."""
    return user is None or user.is_admin


def can_see(user: User | None, owner_id: int | None) -> bool:
    """Whether user may see an object owned by owner_id (an object with no owner is for admins only)."""
    return sees_everything(user) or (owner_id is not None and owner_id == user.id)


def visible(query: Q, model: Any, user: User | None) -> Q:
    """query limited to the rows of `model` that user may see."""
    return query if sees_everything(user) else query.where(model.owner_id == user.id)


def owner_id(user: User | None) -> int | None:
    """The owner to record on an object user creates (internal callers create ownerless, admin-only objects)."""
    return user.id if user is not None else None
