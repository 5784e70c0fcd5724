"""The playground's stream: one generation on a base or one of the caller's adapters (catalog.resolve: someone else's
is a 404), sent through app.core.generation.client and answered as server-sent events in the studio's own shape
(`start`, `token`..., then `end` or `error`); the page opens one per column. A client that goes away (the Stop
button) leaves the generation's context, which sets the request's cancel key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.errors import clip
from app.api.generation_deps import ClientDep
from app.core.generation import catalog
from app.core.generation import protocol as p
from app.core.generation.client import Generation, GenerationClient, GenerationTimeout, GenerationUnavailable
from app.deps import CurrentUser, UnitOfWorkDep

router = APIRouter(prefix="/api/playground", tags=["playground"])
MAX_TURNS = 254  # the protocol's 256 messages, less the system prompt, with room to spare
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class PlaygroundIn(p.Sampling):
    """One column's generation: the model, the shared system prompt and conversation, and the sampling settings
    (max_tokens, temperature, top_p, stop, seed: the protocol's own fields and bounds)."""

    model: str = Field(min_length=1, max_length=300, description="A base's name or `run-<id>`.")
    system: str = Field("", max_length=p.MAX_PROMPT_CHARS, description="The system prompt; empty for none.")
    messages: Annotated[list[p.ChatMessage], Field(min_length=1, max_length=MAX_TURNS)]

    def chat(self) -> tuple[p.ChatMessage, ...]:
        """The conversation as the service receives it, the system prompt first."""
        system = (p.ChatMessage(role="system", content=self.system),) if self.system.strip() else ()
        return system + tuple(self.messages)

    def sampling(self) -> p.Sampling:
        """The sampling settings alone."""
        return p.Sampling(**self.model_dump(include=set(p.Sampling.model_fields)))


class StreamError(Exception):
    """A failed generation: its status and the API's error shape before the stream began, an `error` event after."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> JSONResponse:
        """The API's error body ({"error": {code, message, field, line}})."""
        body = {"code": self.code, "message": clip(self.message), "field": self.field, "line": None}
        return JSONResponse({"error": body}, status_code=self.status)

    def event(self) -> str:
        """The same error as the stream's last event."""
        return sse("error", {"status": self.status, "code": self.code, "message": clip(self.message)})


# Out of the schema, as /v1's routes: its fuzzing would read the 503 of a suite with no generation service as a 5xx.
@router.post("/stream", include_in_schema=False)
async def stream(body: PlaygroundIn, work: UnitOfWorkDep, user: CurrentUser, client: ClientDep) -> Response:
    """Stream one generation: 404 for a model the caller may not use, 503 when no generation service runs."""
    messages = body.chat()
    if sum(len(m.content) for m in messages) > p.MAX_PROMPT_CHARS:
        return StreamError(422, "prompt_too_long", f"The system prompt and messages hold more than "
                           f"{p.MAX_PROMPT_CHARS} characters together.", "messages").response()
    resolved = await run_in_threadpool(catalog.resolve, await work.open(), body.model, user)
    await work.close(None)  # no database connection held while the generation runs (minutes, maybe)
    request = p.GenerationRequest(base=resolved.base, adapter=resolved.adapter, messages=messages,
                                  sampling=body.sampling(), owner_id=user.id)
    try:
        return await _open(client, request, resolved)
    except StreamError as error:
        return error.response()


async def _open(client: GenerationClient, request: p.GenerationRequest, resolved: catalog.Resolved) -> Response:
    """Send the request and wait for its first event, so that what fails at once is an HTTP status."""
    stack = AsyncExitStack()
    try:
        generation = await stack.enter_async_context(client.generate(request))
        start = _started(await _next(generation), resolved)
    except GenerationUnavailable as error:
        await stack.aclose()
        raise StreamError(503, "generation_unavailable", str(error)) from None
    except BaseException:
        await stack.aclose()
        raise
    return StreamingResponse(_events(start, generation, stack), media_type="text/event-stream",
                             headers=STREAM_HEADERS)


async def _events(start: p.ReplyStart, generation: Generation, stack: AsyncExitStack) -> AsyncIterator[str]:
    """start, tokens, then end or error; leaving early (the client went away) cancels the generation."""
    async with stack:
        yield sse("start", start.model_dump(exclude={"type"}))
        while True:
            try:
                reply = await _next(generation)
            except StreamError as error:
                yield error.event()
                return
            if isinstance(reply, p.ReplyToken) and reply.text:
                yield sse("token", {"text": reply.text})
            elif isinstance(reply, p.ReplyError):
                yield _reply_error(reply).event()
                return
            elif isinstance(reply, p.ReplyEnd):
                yield sse("end", reply.model_dump(exclude={"type"}))
                return


def _started(reply: Any, resolved: catalog.Resolved) -> p.ReplyStart:
    """The first event, which must be `start` with the adapter asked for (the proof it was applied)."""
    if isinstance(reply, p.ReplyError):
        raise _reply_error(reply)
    if not isinstance(reply, p.ReplyStart):
        raise StreamError(502, "bad_service_reply", f"The generation service began with a '{reply.type}' event.")
    if not resolved.applied_by(reply):
        raise StreamError(502, "adapter_mismatch", "The generation service applied other adapter files than those "
                          "asked for; nothing was generated.")
    return reply


async def _next(generation: Generation) -> p.ReplyStart | p.ReplyToken | p.ReplyEnd | p.ReplyError:
    try:
        return await generation.next()
    except GenerationTimeout as error:
        raise StreamError(504, "generation_timeout", str(error)) from None
    except GenerationUnavailable as error:
        raise StreamError(503, "generation_unavailable", str(error)) from None


def _reply_error(reply: p.ReplyError) -> StreamError:
    """The service's error; its own faults (500) read as a bad gateway: the web itself did not fail."""
    status = reply.status if 400 <= reply.status <= 599 and reply.status != 500 else 502
    field = "messages" if status == 400 else None
    return StreamError(status, clip(reply.code, 100), reply.message, field)


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
