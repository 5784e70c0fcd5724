"""Accounts, for admins: DELETE /api/users/{id} (made with `lorastudio users create`; listed by `users list`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.core.services import deletion
from app.deps import CurrentUser, RowId, SessionDep

router = APIRouter(prefix="/api/users", tags=["users"])


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_user(user_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    """Delete an account with its tokens and browser sessions; its datasets and runs stay, for admins (admins only:
    403; not oneself nor the last admin: 409)."""
    deletion.delete_user(session, user_id, actor=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
