"""Server-sent events of a run: stored history first, then live points from Redis, resumable by Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from redis import asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from app.core import live
from app.core.db import session_scope
from app.core.models import Run, RunStatus
from app.core.repositories import runs as runs_repo
from app.core.resources import Resources
from app.deps import ResourcesDep, RunDep

router = APIRouter(prefix="/api/runs", tags=["runs"])
KEEPALIVE_S = 15.0
POLL_S = 1.0


def _sse(payload: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {payload['type']}\ndata: {live.encode(payload)}\n\n"


class RunStream:
    """One client's view of a run's events; seq is the resume point and no point is sent twice."""

    def __init__(self, res: Resources, run_id: int, after: int) -> None:
        self.res, self.run_id, self.after = res, run_id, after
        self.status: dict[str, Any] = {}

    def _load(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with session_scope(self.res.session_factory) as session:
            points = [live.metric_update(p) for p in runs_repo.metric_points(session, self.run_id, self.after)]
            return points, live.status_update(session.get(Run, self.run_id))

    async def catch_up(self) -> AsyncIterator[str]:
        """Everything stored after the resume point, then the run's status."""
        points, status = await run_in_threadpool(self._load)
        for point in points:
            self.after = point["seq"]
            yield _sse(point, point["seq"])
        if status != self.status:
            self.status = status
            yield _sse(status)

    @property
    def finished(self) -> bool:
        """True once the run reached an end state (the stream then closes)."""
        return RunStatus(self.status["status"]).finished

    async def live(self, request: Request) -> AsyncIterator[str]:
        """Points and status changes as they are published; falls back to polling the DB without Redis."""
        client = aioredis.from_url(self.res.settings.redis_url, socket_connect_timeout=2)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(live.run_channel(self.run_id))
        except Exception:
            pubsub = None
        async for chunk in self._relay(request, pubsub):
            yield chunk
        await client.aclose()

    async def _relay(self, request: Request, pubsub: Any) -> AsyncIterator[str]:
        idle = 0.0
        while not self.finished and not await request.is_disconnected():
            message = await _next_message(pubsub)
            if message is None:
                idle += POLL_S
                if idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                # Nothing published (or no Redis): the DB is the truth, so catch up from it.
                async for chunk in self.catch_up():
                    yield chunk
                continue
            payload = json.loads(message["data"])
            if payload["type"] == "metric" and payload["seq"] != self.after + 1:
                async for chunk in self.catch_up():  # missed or already sent: the DB fills the gap exactly
                    yield chunk
            elif payload["type"] == "metric":
                self.after = payload["seq"]
                yield _sse(payload, payload["seq"])
            else:
                self.status = payload
                yield _sse(payload)


async def _next_message(pubsub: Any) -> dict[str, Any] | None:
    if pubsub is None:
        await asyncio.sleep(POLL_S)
        return None
    try:
        return await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
    except Exception:
        await asyncio.sleep(POLL_S)
        return None


@router.get("/{run_id}/events")
async def run_events(
    run: RunDep, request: Request, res: ResourcesDep, last_event_id: str | None = Header(None)
) -> StreamingResponse:
    """SSE: `metric` events (id = seq) and `status` events; reconnect with Last-Event-ID to resume."""
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    stream = RunStream(res, run.id, after)

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for chunk in stream.catch_up():
            yield chunk
        async for chunk in stream.live(request):
            yield chunk

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
