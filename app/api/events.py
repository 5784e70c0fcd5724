"""Server-sent events of a run: stored history first, then live points from Redis, resumable by Last-Event-ID.

A client costs no thread, no database connection and no Redis connection while it waits: the process's one
subscription (app.core.live.LiveHub) hands it the run's updates, an idle stream gets a keep-alive comment, and the
database is read only for the history (once, in pages, each page a short unit of work) and to fill a gap."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from app.core import live
from app.core.db import GateTimeout, session_scope
from app.core.errors import StudioError
from app.core.models import MetricPoint, Run, RunStatus
from app.core.resources import Resources
from app.deps import MAX_ROW_ID, CurrentUser, ResourcesDep, RunDep, busy

router = APIRouter(prefix="/api/runs", tags=["runs"])
HISTORY_PAGE = 2000  # metric points per unit of work while catching up: bounded memory per client
READY_WAIT_S = 2.0
LAST_EVENT_ID = re.compile(r"[0-9]{1,10}")


def _sse(payload: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {payload['type']}\ndata: {live.encode(payload)}\n\n"


def resume_point(last_event_id: str | None) -> int:
    """The seq a reconnecting client got last (0: from the start); a 422 naming the header for anything but the
    ids this stream sends (decimal seqs), never a 500 however long or odd."""
    if last_event_id is None or not last_event_id.strip():
        return 0
    value = last_event_id.strip()
    if not LAST_EVENT_ID.fullmatch(value) or int(value) > MAX_ROW_ID:
        raise StudioError("invalid", "bad_last_event_id", f"Last-Event-ID must be the id of an event of this stream "
                          f"(a whole number from 0 to {MAX_ROW_ID}); leave it out to start from the beginning.",
                          field="Last-Event-ID")
    return int(value)


def live_hub(request: Request) -> live.LiveHub:
    """This web process's fan-out of live updates, started on the first stream (one per event loop)."""
    state = request.app.state
    hub: live.LiveHub | None = getattr(state, "live_hub", None)
    if hub is None or hub.loop is not asyncio.get_running_loop():
        res: Resources = state.resources
        settings = res.settings
        state.live_hub = hub = live.LiveHub(settings.redis_url, settings.sse_max_clients,
                                            settings.sse_max_clients_per_user, statuses=_statuses_reader(res))
    return hub


def _statuses_reader(res: Resources):  # noqa: ANN202
    async def statuses(run_ids: list[int]) -> dict[int, dict[str, Any]]:
        def read() -> dict[int, dict[str, Any]]:
            with session_scope(res.session_factory) as session:
                runs = session.scalars(select(Run).where(Run.id.in_(run_ids[:1000])))
                return {run.id: live.status_update(run) for run in runs}

        slot = await res.db_gate.acquire()
        try:
            return await anyio.to_thread.run_sync(read)
        finally:
            res.db_gate.release(slot)

    return statuses


class RunStream:
    """One client's view of a run's events; seq is the resume point and no point is sent twice."""

    def __init__(self, res: Resources, run_id: int, after: int, subscriber: live.Subscriber) -> None:
        self.res, self.run_id, self.after, self.subscriber = res, run_id, after, subscriber
        self.status: dict[str, Any] = {}

    def _load(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with session_scope(self.res.session_factory) as session:
            query = select(MetricPoint).where(MetricPoint.run_id == self.run_id, MetricPoint.seq > self.after)
            points = session.scalars(query.order_by(MetricPoint.seq).limit(HISTORY_PAGE)).all()
            return [live.metric_update(p) for p in points], live.status_update(session.get(Run, self.run_id))

    async def catch_up(self) -> AsyncIterator[str]:
        """Everything stored after the resume point (page by page), then the run's status."""
        while True:
            slot = await self.res.db_gate.acquire()  # a short unit of work; the slot is back before we send
            try:
                points, status = await anyio.to_thread.run_sync(self._load)
            finally:
                self.res.db_gate.release(slot)
            if points:
                yield "".join(self._points(points))  # one write per page, not one per point
            if len(points) < HISTORY_PAGE:
                break
        if status != self.status:
            self.status = status
            yield _sse(status)

    def _points(self, points: list[dict[str, Any]]) -> Iterator[str]:
        for point in points:
            self.after = point["seq"]
            yield _sse(point, point["seq"])

    @property
    def finished(self) -> bool:
        """True once the run reached an end state (the stream then closes)."""
        return RunStatus(self.status["status"]).finished

    async def live(self) -> AsyncIterator[str]:
        """Points and status changes as the hub hands them over; a keep-alive comment when idle."""
        keepalive = self.res.settings.sse_keepalive_s
        while not self.finished:
            try:
                payload = await asyncio.wait_for(self.subscriber.queue.get(), keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if payload is live.RESYNC or self.subscriber.lagged:
                self.subscriber.lagged = False
                async for chunk in self.catch_up():
                    yield chunk
            elif payload["type"] == "metric" and payload["seq"] <= self.after:
                continue  # sent already (with the history)
            elif payload["type"] == "metric" and payload["seq"] != self.after + 1:
                async for chunk in self.catch_up():  # missed some: the DB fills the gap exactly
                    yield chunk
            elif payload["type"] == "metric":
                self.after = payload["seq"]
                yield _sse(payload, payload["seq"])
            elif payload != self.status:
                self.status = payload
                yield _sse(payload)


@router.get("/{run_id}/events")
async def run_events(
    run: RunDep, user: CurrentUser, request: Request, res: ResourcesDep, last_event_id: str | None = Header(None)
) -> StreamingResponse:
    """SSE: `metric` events (id = seq) and `status` events; reconnect with Last-Event-ID to resume. Bounded per
    process (LORASTUDIO_SSE_MAX_CLIENTS: 503) and per user (LORASTUDIO_SSE_MAX_CLIENTS_PER_USER: 429)."""
    after = resume_point(last_event_id)
    hub = live_hub(request)
    try:
        subscriber = hub.join(run.id, user.id)
    except live.LiveFull as exc:
        if exc.per_user:
            raise busy(f"You have {exc.bound} live streams open already (LORASTUDIO_SSE_MAX_CLIENTS_PER_USER); "
                       "close some pages or tabs first.", retry_after_s=10, status=429) from None
        raise busy(f"This web process serves {exc.bound} live streams already (LORASTUDIO_SSE_MAX_CLIENTS); "
                   "try again shortly.", retry_after_s=10) from None
    stream = RunStream(res, run.id, after, subscriber)

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            await hub.ready(READY_WAIT_S)  # subscribed before the history is read: no gap between the two
            async for chunk in stream.catch_up():
                yield chunk
            async for chunk in stream.live():
                yield chunk
        except GateTimeout:
            return  # the database is saturated: end here, the browser reconnects (retry) and resumes by id
        finally:
            hub.leave(subscriber)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
