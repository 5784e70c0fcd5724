"""The web's generation client as a FastAPI dependency, shared by /v1 and the playground: one per web process and
event loop, so every route's generations go through one Redis connection pool."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from app.core.generation import protocol as p
from app.core.generation.client import GenerationClient


async def generation_client(request: Request) -> GenerationClient:
    """This web process's generation client (one per event loop and Redis URL)."""
    state, settings = request.app.state, request.app.state.resources.settings
    found: GenerationClient | None = getattr(state, "generation_client", None)
    if found is None or found.loop is not asyncio.get_running_loop() or found.redis_url != settings.redis_url:
        found = state.generation_client = GenerationClient(settings.redis_url, settings.generation_start_timeout_s,
                                                           settings.generation_idle_timeout_s,
                                                           p.Keys(settings.generation_namespace))
    return found


ClientDep = Annotated[GenerationClient, Depends(generation_client)]
