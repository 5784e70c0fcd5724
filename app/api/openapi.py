"""The OpenAPI schema, served like every other route: to signed-in callers only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
def openapi_schema(request: Request) -> dict[str, Any]:
    """The API's schema (FastAPI's own route would skip the app-wide sign-in guard)."""
    return request.app.openapi()
