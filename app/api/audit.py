"""The audit log, for admins: sign-ins, API tokens, account changes, local model folders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from app.core.services import audit
from app.deps import CurrentUser, OptionalRowIdQuery, SessionDep

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    """One audited action: when, who (the name as it was then), what, on what, from which client."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_user_id: int | None
    actor: str
    action: str
    target: str
    client: str
    details: dict[str, Any]


@router.get("", response_model=list[AuditEntryOut])
def list_audit(session: SessionDep, user: CurrentUser,
               limit: Annotated[int, Query(ge=1, le=audit.MAX_LIST)] = 100,
               action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)*$",
                                                   description="e.g. login.failure")] = None,
               before_id: OptionalRowIdQuery = None) -> list[AuditEntryOut]:
    """The newest entries first (admins only); page back with before_id=<the last id seen>."""
    entries = audit.list_entries(session, user, limit=limit, action=action, before_id=before_id)
    return [AuditEntryOut.model_validate(entry) for entry in entries]
