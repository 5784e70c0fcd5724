"""Live updates: what Redis pub/sub carries to browsers (metric points, status changes), and its channel names.

Relayed as the SSE events of /api/runs/{id}/events; not to be confused with the trainer's reports
(worker.planning.reports) or a run's timeline (models.TimelineEntry)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis

from app.core.models import MetricPoint, Run

log = logging.getLogger(__name__)


def run_channel(run_id: int) -> str:
    """The pub/sub channel of one run's live events."""
    return f"lorastudio:run:{run_id}"


def metric_update(point: MetricPoint) -> dict[str, Any]:
    """A metric point as a live update; seq is its SSE id."""
    return {"type": "metric", "seq": point.seq, "step": point.step, **point.values}


def status_update(run: Run) -> dict[str, Any]:
    """A run's state as a live update."""
    return {
        "type": "status",
        "status": run.status,
        "current_step": run.current_step,
        "total_steps": run.total_steps,
        "error_code": run.error_code,
        "error_message": run.error_message,
    }


def encode(payload: dict[str, Any]) -> str:
    """JSON text for Redis and SSE."""
    return json.dumps(payload, default=str)


RUN_PATTERN = "lorastudio:run:*"
RESYNC: dict[str, Any] = {"type": "resync"}  # to a subscriber: read the database, live updates may have been missed


class LiveFull(Exception):
    """A subscriber over the process's or the user's bound."""

    def __init__(self, per_user: bool, bound: int) -> None:
        super().__init__(f"{'per-user' if per_user else 'per-process'} bound of {bound} live streams reached")
        self.per_user, self.bound = per_user, bound


class Subscriber:
    """One SSE client of a run: the hub puts live updates in its queue; `lagged` when some were dropped."""

    QUEUE_SIZE = 256

    def __init__(self, run_id: int, user_id: int) -> None:
        self.run_id, self.user_id = run_id, user_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.QUEUE_SIZE)
        self.lagged = False

    def deliver(self, payload: dict[str, Any]) -> None:
        """Queue an update; a client too slow to take them gets a resync from the database instead."""
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.lagged = True


class LiveHub:
    """The live updates of one web process: ONE Redis pattern subscription (lorastudio:run:*) read by one task and
    fanned out to every subscriber of the run a message names, so N clients cost one connection, not N.

    Without Redis (down, restarting) it reconnects every few seconds, and meanwhile sends RESYNC to every
    subscriber each POLL_WITHOUT_REDIS_S so they read what they missed from the database; after a reconnect too.
    Statuses that nobody publishes (a queued run cancelled from the web, a lost worker's run requeued) reach the
    subscribers through `statuses`, one query per STATUS_POLL_S for all the runs watched, not one per client."""

    RECONNECT_S = 2.0
    POLL_WITHOUT_REDIS_S = 5.0
    STATUS_POLL_S = 5.0

    def __init__(self, redis_url: str, max_clients: int, max_per_user: int,
                 statuses: Callable[[list[int]], Awaitable[dict[int, dict[str, Any]]]] | None = None) -> None:
        self.redis_url, self.max_clients, self.max_per_user = redis_url, max_clients, max_per_user
        self.statuses = statuses
        self.loop = asyncio.get_running_loop()
        self.subscribers: dict[int, set[Subscriber]] = {}
        self.per_user: dict[int, int] = {}
        self.count = 0
        self.connected = asyncio.Event()
        self._last_status: dict[int, dict[str, Any]] = {}
        self._tasks = [asyncio.create_task(self._read_forever()), asyncio.create_task(self._poll_forever())]

    def join(self, run_id: int, user_id: int) -> Subscriber:
        """A new subscriber of run_id, or LiveFull past a bound (checked before any other work)."""
        if self.count >= self.max_clients:
            raise LiveFull(False, self.max_clients)
        if self.per_user.get(user_id, 0) >= self.max_per_user:
            raise LiveFull(True, self.max_per_user)
        subscriber = Subscriber(run_id, user_id)
        self.subscribers.setdefault(run_id, set()).add(subscriber)
        self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        self.count += 1
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        """Forget a subscriber (again: nothing)."""
        run = self.subscribers.get(subscriber.run_id)
        if run is None or subscriber not in run:
            return
        run.discard(subscriber)
        if not run:
            del self.subscribers[subscriber.run_id]
            self._last_status.pop(subscriber.run_id, None)
        self.count -= 1
        left = self.per_user[subscriber.user_id] - 1
        if left:
            self.per_user[subscriber.user_id] = left
        else:
            del self.per_user[subscriber.user_id]

    async def ready(self, timeout_s: float) -> bool:
        """Wait (briefly) until the subscription is live, so what a client reads from the database next and what
        is published after meet without a gap; False without Redis (the database polls then cover)."""
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def publish_local(self, run_id: int, payload: dict[str, Any]) -> None:
        """Hand an update to every subscriber of run_id in this process."""
        for subscriber in tuple(self.subscribers.get(run_id, ())):
            subscriber.deliver(payload)

    def _resync_all(self) -> None:
        for subscribers in tuple(self.subscribers.values()):
            for subscriber in tuple(subscribers):
                subscriber.deliver(RESYNC)

    async def _read_forever(self) -> None:
        while True:
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=2, health_check_interval=30)
            try:
                pubsub = client.pubsub()
                await pubsub.psubscribe(RUN_PATTERN)
                async for message in pubsub.listen():
                    self._on_message(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live updates: Redis unreachable, retrying in %gs", self.RECONNECT_S, exc_info=True)
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.aclose())
            if was_connected:
                self._resync_all()
            await asyncio.sleep(self.RECONNECT_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "psubscribe":
            if not self.connected.is_set():
                self.connected.set()
                self._resync_all()  # what was published while it was not subscribed is in the database
            return
        if message["type"] != "pmessage":
            return
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            run_id = int(channel.rsplit(":", 1)[1])
            payload = json.loads(message["data"])
        except (ValueError, IndexError):
            return
        if run_id in self.subscribers and isinstance(payload, dict) and payload.get("type") in ("metric", "status"):
            if payload["type"] == "status":
                self._last_status[run_id] = payload
            self.publish_local(run_id, payload)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.STATUS_POLL_S if self.connected.is_set() else self.POLL_WITHOUT_REDIS_S)
            if not self.subscribers:
                continue
            if not self.connected.is_set():
                self._resync_all()
                continue
            if self.statuses is None:
                continue
            try:
                found = await self.statuses(list(self.subscribers))
            except Exception:
                log.warning("live updates: reading run statuses failed", exc_info=True)
                continue
            for run_id, status in found.items():
                if self._last_status.get(run_id) != status and run_id in self.subscribers:
                    self._last_status[run_id] = status
                    self.publish_local(run_id, status)

    async def close(self) -> None:
        """Stop reading (the web process is stopping)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
