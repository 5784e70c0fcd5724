"""Counting a request body as it arrives, for the middlewares that cap it (app.uploads.BodySizeLimit for every
path, app.api.openai_errors.V1BodyCap for /v1 in OpenAI's shape): Starlette caps form fields but not file parts,
so a cap must sit on the raw stream, and a declared Content-Length past it is refused before a byte is read."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Receive, Scope


def declared_over(scope: Scope, limit: int) -> bool:
    """Whether the request declares (Content-Length) a body larger than limit."""
    declared = dict(scope.get("headers") or {}).get(b"content-length", b"")
    return declared.isdigit() and int(declared) > limit


def counting(receive: Receive, limit: int, too_large: Callable[[], Exception]) -> Receive:
    """receive, raising too_large() once more than limit body bytes have arrived."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise too_large()
        return message

    return counted
