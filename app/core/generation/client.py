"""The web's side of the generation protocol (protocol.py): send a GenerationRequest, read its Reply events.

Async only (redis.asyncio), so a web process waits on generations without holding a thread. A generation is an
async context manager: leaving it before the last event (the caller went away, a timeout) sets the request's cancel
key, so the service stops working for nobody.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import TypeAdapter, ValidationError
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from app.core.generation import protocol
from app.core.generation.protocol import GenerationRequest, Reply, ReplyEnd, ReplyError

REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)
READ_BLOCK_MS = 5_000  # one XREAD's longest wait; the socket timeout sits above it
PRESENCE_CACHE_S = 1.0  # how long "a service runs" (or not) is believed before looking again
CLEANUP_S = 5.0  # the most time leaving a generation may take (cancel key, withdrawal)
NO_SERVICE = ("No generation service is running. Start one: `lorastudio up` starts one with the web, or run "
              "`python -m worker.generation` on a machine that can load the models (with the studio's DATABASE_URL "
              "and REDIS_URL).")
REDIS_DOWN = "The studio's Redis is not answering, so the generation service cannot be reached. Try again shortly."


class GenerationUnavailable(Exception):
    """No generation service runs, or Redis does not answer: nothing was (or will be) generated."""


class GenerationTimeout(Exception):
    """The service did not answer in time; the request was withdrawn or cancelled."""


class GenerationClient:
    """One per web process and event loop: a Redis connection pool, and what it last saw of the services."""

    def __init__(self, redis_url: str, start_timeout_s: float, idle_timeout_s: float,
                 keys: protocol.Keys = protocol.Keys()) -> None:
        self.redis_url, self.start_timeout_s, self.idle_timeout_s = redis_url, start_timeout_s, idle_timeout_s
        self.keys = keys
        self.loop = asyncio.get_running_loop()  # redis.asyncio pools belong to the loop that made them
        self.redis = aioredis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=READ_BLOCK_MS / 1000 + 10,
                                       health_check_interval=30)
        self._presence: tuple[float, bool] | None = None

    async def service_running(self) -> bool:
        """Whether any generation service's presence key exists (looked up at most once a second)."""
        now = time.monotonic()
        if self._presence is not None and now - self._presence[0] < PRESENCE_CACHE_S:
            return self._presence[1]
        running = False
        async for _ in self.redis.scan_iter(match=self.keys.presence_pattern, count=1000):
            running = True
            break
        self._presence = (now, running)
        return running

    @asynccontextmanager
    async def generate(self, request: GenerationRequest) -> AsyncIterator[Generation]:
        """Send request and give its replies; GenerationUnavailable at once when no service runs."""
        payload = request.model_dump_json()
        try:
            if not await self.service_running():
                raise GenerationUnavailable(NO_SERVICE)
            await self.redis.rpush(self.keys.requests, payload)
        except RedisError:
            raise GenerationUnavailable(REDIS_DOWN) from None
        generation = Generation(self, request.id, payload)
        try:
            yield generation
        finally:
            # Shielded: a client that disconnected cancels this task, and the service must still hear of it.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CLEANUP_S):
                await generation.close()

    async def close(self) -> None:
        """Let go of the connection pool."""
        await self.redis.aclose()


class Generation:
    """The replies of one request, in order: ReplyStart, ReplyToken..., then one ReplyEnd or ReplyError."""

    def __init__(self, client: GenerationClient, request_id: str, payload: str) -> None:
        self.client, self.request_id, self.payload = client, request_id, payload
        self.stream = protocol.reply_stream(request_id)
        self.started = self.finished = False
        self._last_id = "0-0"
        self._buffer: list[Reply] = []

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> Reply:
        if self.finished:
            raise StopAsyncIteration
        return await self.next()

    async def next(self) -> Reply:
        """The next reply, waiting up to the start timeout for the first and the idle timeout for the others."""
        timeout = self.client.idle_timeout_s if self.started else self.client.start_timeout_s
        deadline = time.monotonic() + timeout
        while not self._buffer:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise GenerationTimeout(await self._timed_out(timeout))
            await self._read(min(READ_BLOCK_MS, remaining_ms))
        reply = self._buffer.pop(0)
        self.started = True
        self.finished = isinstance(reply, ReplyEnd | ReplyError)
        return reply

    async def _read(self, block_ms: int) -> None:
        try:
            found = await self.client.redis.xread({self.stream: self._last_id}, count=100, block=max(1, block_ms))
        except RedisError:
            raise GenerationUnavailable(REDIS_DOWN) from None
        for _stream, entries in found or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self._buffer.append(parse_reply(fields))

    async def _timed_out(self, timeout: float) -> str:
        """Withdraw a request no service took yet; say what happened."""
        try:
            withdrawn = not self.started and await self.client.redis.lrem(self.client.keys.requests, 1, self.payload)
        except RedisError:
            raise GenerationUnavailable(REDIS_DOWN) from None
        if withdrawn:
            self.finished = True  # withdrawn: nothing to cancel
            return (f"No generation service took the request within {timeout:g} s (they may all be busy, or "
                    "stopped); try again, or raise LORASTUDIO_GENERATION_START_TIMEOUT_S.")
        what = "start answering" if not self.started else "send its next token"
        return (f"The generation service did not {what} within {timeout:g} s; the request was cancelled "
                "(LORASTUDIO_GENERATION_START_TIMEOUT_S / _IDLE_TIMEOUT_S).")

    async def close(self) -> None:
        """Cancel the request unless its last event came, and drop its reply stream (this is its only reader)."""
        try:
            if not self.finished:
                await self.client.redis.set(protocol.cancel_key(self.request_id), "1", ex=protocol.REPLY_TTL_S)
            await self.client.redis.delete(self.stream)
        except RedisError:
            pass  # the stream and the cancel key's absence expire by themselves; nothing more to do


def parse_reply(fields: dict[Any, Any]) -> Reply:
    """One stream entry's Reply; a malformed one reads as the service's error (never a crash of the web)."""
    raw = fields.get(protocol.REPLY_FIELD.encode(), fields.get(protocol.REPLY_FIELD))
    try:
        return REPLY.validate_json(raw if raw is not None else b"")
    except ValidationError as error:
        return ReplyError(status=502, code="bad_service_reply",
                          message=f"The generation service sent an event this web cannot read: {str(error)[:200]}")

