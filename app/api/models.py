"""Base model registry."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.schemas import ModelIn, ModelOut
from app.core.access import sees_everything
from app.core.models import BaseModelEntry, User
from app.core.repositories import catalog
from app.core.services import deletion
from app.core.services import models as model_service
from app.deps import CurrentUser, RowId, SessionDep

router = APIRouter(prefix="/api/models", tags=["models"])

# What a non-admin reads in place of a local folder's path: the path would say what exists on the studio's machines.
HIDDEN_REF = "local folder (admins see the path)"


def model_out(entry: BaseModelEntry, user: User | None) -> ModelOut:
    """The model as user may see it: a local folder's path only for admins."""
    out = ModelOut.model_validate(entry)
    return out if entry.source != "local" or sees_everything(user) else out.model_copy(update={"ref": HIDDEN_REF})


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelOut)
def register_model(body: ModelIn, session: SessionDep, user: CurrentUser) -> ModelOut:
    """Register a base model by Hugging Face id, or (admins) by a folder on the studio's machines."""
    entry = model_service.register_model(session, body.name, body.ref, body.gguf_file, user=user,
                                          trust_remote_code=body.trust_remote_code)
    return model_out(entry, user)


@router.get("", response_model=list[ModelOut])
def list_models(session: SessionDep, user: CurrentUser) -> list[ModelOut]:
    """Registered base models (a local folder's path shown to admins only)."""
    return [model_out(m, user) for m in catalog.list_models(session)]


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_model(model_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    """Unregister a base model (admins only; refused while a run or an analysis uses it)."""
    deletion.delete_model(session, model_id, user=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
