"""Base model registry."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.schemas import ModelIn, ModelOut
from app.core.repositories import catalog
from app.core.services import models as model_service
from app.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelOut)
def register_model(body: ModelIn, session: SessionDep, user: CurrentUser) -> ModelOut:
    """Register a base model by Hugging Face id, or (admins) by a folder on the studio's machines."""
    entry = model_service.register_model(session, body.name, body.ref, body.gguf_file, user=user,
                                          trust_remote_code=body.trust_remote_code)
    return ModelOut.model_validate(entry)


@router.get("", response_model=list[ModelOut])
def list_models(session: SessionDep) -> list[ModelOut]:
    """Registered base models."""
    return [ModelOut.model_validate(m) for m in catalog.list_models(session)]
