"""GET /api/me: who the caller is, their quotas and what they use of them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.core.services import quotas
from app.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["account"])


class QuotaOut(BaseModel):
    """One quota: its limit (None: no limit) and what is used of it."""

    limit: int | None = Field(description="None: no limit.")
    used: int


class MeOut(BaseModel):
    """The signed-in user and their quotas."""

    username: str
    is_admin: bool
    queued_runs: QuotaOut
    running_runs: QuotaOut = Field(description="Runs past it wait queued while other users' runs start.")
    storage_bytes: QuotaOut = Field(description="Datasets, adapters and checkpoints, each stored file once.")


@router.get("/me", response_model=MeOut)
def me(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> MeOut:
    """The caller's account and quotas (set by an admin: `lorastudio users set-quota`)."""
    limits, usage = quotas.limits_of(user, settings), quotas.usage_of(session, user)
    return MeOut(username=user.username, is_admin=user.is_admin,
                 queued_runs=QuotaOut(limit=limits.queued_runs, used=usage.queued_runs),
                 running_runs=QuotaOut(limit=limits.running_runs, used=usage.running_runs),
                 storage_bytes=QuotaOut(limit=limits.storage_bytes, used=usage.storage_bytes))
