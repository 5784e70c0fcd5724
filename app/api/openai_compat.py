"""OpenAI-compatible inference at /v1: the models list, chat completions and completions, on registered bases and
the caller's adapters (`run-<id>`). The web never loads weights: each generation goes to the generation service
over Redis (app.core.generation.client). Request and answer shapes are in app.api.openai_wire, errors in
app.api.openai_errors; install() mounts the routes, scopes OpenAI's error shape to /v1 and adds the body cap."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.api.errors import clip
from app.api.generation_deps import ClientDep
from app.api.openai_errors import PREFIX, OpenAIError, V1BodyCap, error_body, scoped
from app.api.openai_wire import Answer, ChatCompletionIn, CompletionIn, GenerationIn, Shape
from app.core.errors import StudioError
from app.core.generation import catalog
from app.core.generation import protocol as p
from app.core.generation.client import Generation, GenerationClient, GenerationTimeout, GenerationUnavailable
from app.core.models import User
from app.deps import CurrentUser, SessionDep, UnitOfWork, UnitOfWorkDep

router = APIRouter(prefix=PREFIX, tags=["openai"])


# Out of the OpenAPI schema: OpenAI's API reference documents them, and the schema's fuzzing would read their 503
# (no generation service in the test suite) as a server error.
@router.get("/models", include_in_schema=False)
async def list_models(session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """The registered base models, then the caller's adapters (`run-<id>`)."""
    cards = await run_in_threadpool(catalog.list_models, session, user)
    return {"object": "list", "data": [{"id": c.id, "object": "model", "created": c.created, "owned_by": c.owned_by}
                                       for c in cards]}


@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(body: ChatCompletionIn, work: UnitOfWorkDep, user: CurrentUser,
                           client: ClientDep) -> Response:
    """A chat completion, streamed as server-sent events when asked."""
    body.check()
    texts = [m.text for m in body.messages]
    if sum(len(t) for t in texts) > p.MAX_PROMPT_CHARS:  # checked before anything is built or sent
        raise OpenAIError(400, "prompt_too_long", f"The messages hold more than {p.MAX_PROMPT_CHARS} characters "
                          "together.", "messages")
    messages = tuple(p.ChatMessage(role="system" if m.role == "developer" else m.role, content=t)
                     for m, t in zip(body.messages, texts, strict=True))
    sampling = body.sampling(body.max_completion_tokens or body.max_tokens)
    return await _generate(body, Shape(chat=True), work, user, client, messages=messages, sampling=sampling)


@router.post("/completions", include_in_schema=False)
async def completions(body: CompletionIn, work: UnitOfWorkDep, user: CurrentUser, client: ClientDep) -> Response:
    """A completion of one prompt (a string, or a list of one string), streamed when asked."""
    body.check()
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0] if len(body.prompt) == 1 else None
    if prompt is None:
        raise OpenAIError(400, "unsupported_value", "Send one prompt: a string, or a list of one string.", "prompt")
    return await _generate(body, Shape(chat=False), work, user, client, prompt=prompt,
                           sampling=body.sampling(body.max_tokens))


async def _generate(body: GenerationIn, shape: Shape, work: UnitOfWork, user: User, client: GenerationClient,
                    **inputs: Any) -> Response:
    """Resolve the model, send the request, wait for its first event, then answer whole or as a stream."""
    owner_id = user.id
    resolved = await run_in_threadpool(catalog.resolve, await work.open(), body.model, user)
    # The request's database connection goes back before the wait: a generation may take minutes, and holding a
    # DB slot meanwhile would starve the rest of the studio (closing again at the request's end does nothing).
    await work.close(None)
    request = p.GenerationRequest(base=resolved.base, adapter=resolved.adapter, owner_id=owner_id, **inputs)
    stack = AsyncExitStack()
    try:
        generation = await stack.enter_async_context(client.generate(request))
        start = await _first(generation, resolved)
        answer = Answer(shape, request.id, body.model, _fingerprint(start), int(time.time()))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _events(answer, generation, stack, include_usage)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        async with stack:
            return JSONResponse(await _whole(answer, generation))
    except GenerationUnavailable as error:  # no service, or Redis down, before anything was sent
        await stack.aclose()
        raise _service_error(error) from None
    except BaseException:
        await stack.aclose()
        raise


async def _first(generation: Generation, resolved: catalog.Resolved) -> p.ReplyStart:
    reply = await _next(generation)
    if isinstance(reply, p.ReplyStart):
        if not resolved.applied_by(reply):
            raise OpenAIError(502, "adapter_mismatch", "The generation service applied other adapter files than "
                              "those asked for; nothing was generated.")
        return reply
    raise _reply_error(reply) if isinstance(reply, p.ReplyError) else OpenAIError(
        502, "bad_service_reply", f"The generation service began with a '{reply.type}' event.")


async def _next(generation: Generation) -> p.ReplyStart | p.ReplyToken | p.ReplyEnd | p.ReplyError:
    try:
        return await generation.next()
    except (GenerationUnavailable, GenerationTimeout) as error:
        raise _service_error(error) from None


def _service_error(error: GenerationUnavailable | GenerationTimeout) -> OpenAIError:
    if isinstance(error, GenerationTimeout):
        return OpenAIError(504, "generation_timeout", str(error))
    return OpenAIError(503, "generation_unavailable", str(error))


async def _whole(answer: Answer, generation: Generation) -> dict[str, Any]:
    parts: list[str] = []
    while True:
        reply = await _next(generation)
        if isinstance(reply, p.ReplyToken):
            parts.append(reply.text)
        elif isinstance(reply, p.ReplyError):
            raise _reply_error(reply)
        elif isinstance(reply, p.ReplyEnd):
            choice = answer.shape.choice("".join(parts), _finish(reply), chunk=False)
            return answer.envelope(False, choices=[choice], usage=_usage(reply))


async def _events(answer: Answer, generation: Generation, stack: AsyncExitStack,
                  include_usage: bool) -> AsyncIterator[str]:
    """The answer as server-sent events; the generation is cancelled if the client goes away before its end."""
    extra = {"usage": None} if include_usage else {}

    def chunk(text: str | None, finish: str | None = None, **delta: Any) -> str:
        choice = answer.shape.choice(text, finish, chunk=True)
        choice.get("delta", {}).update(delta)
        return _sse(answer.envelope(True, choices=[choice], **extra))

    async with stack:
        if answer.shape.chat:
            yield chunk(None, role="assistant")
        while True:
            try:
                reply = await _next(generation)
            except OpenAIError as error:
                yield _sse(error_body(error))
                return
            if isinstance(reply, p.ReplyToken) and reply.text:
                yield chunk(reply.text)
            elif isinstance(reply, p.ReplyError):
                yield _sse(error_body(_reply_error(reply)))
                return
            elif isinstance(reply, p.ReplyEnd):
                yield chunk(None if answer.shape.chat else "", _finish(reply))
                if include_usage:
                    yield _sse(answer.envelope(True, choices=[], usage=_usage(reply)))
                yield "data: [DONE]\n\n"
                return


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _finish(end: p.ReplyEnd) -> str:
    return "stop" if end.finish_reason == "cancelled" else end.finish_reason


def _usage(end: p.ReplyEnd) -> dict[str, int]:
    return {"prompt_tokens": end.prompt_tokens, "completion_tokens": end.completion_tokens,
            "total_tokens": end.prompt_tokens + end.completion_tokens}


def _fingerprint(start: p.ReplyStart) -> str:
    return f"adapter-{start.adapter_sha256[:16]}" if start.adapter_sha256 else "base"


def _reply_error(reply: p.ReplyError) -> OpenAIError:
    status = reply.status if 400 <= reply.status <= 599 else 502
    return OpenAIError(status, clip(reply.code, 100), clip(reply.message))


def install(app: FastAPI, max_body_bytes: int) -> None:
    """Mount the routes, answer their errors in OpenAI's shape (other paths keep theirs), cap their bodies."""
    app.include_router(router)
    for kind in (StudioError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, scoped(app.exception_handlers.get(kind)))
    app.add_exception_handler(OpenAIError, scoped(None))
    app.add_middleware(V1BodyCap, limit=max_body_bytes)
