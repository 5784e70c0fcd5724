"""Receive an uploaded file onto disk in chunks, capped in size while it streams."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import StudioError

COPY_CHUNK = 1024 * 1024
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class UploadTooLarge(Exception):
    """The body passed the configured limit."""


class BodySizeLimit:
    """ASGI middleware: count body bytes as they arrive and answer 413 past the limit.

    Starlette caps form fields but not file parts, so the cap must sit on the raw stream.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UploadTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except UploadTooLarge:
            await _too_large(send, self.limit)


async def _too_large(send: Send, limit: int) -> None:
    message = (f"The upload is larger than the limit of {limit >> 20} MiB; split the dataset or raise "
               "LORASTUDIO_MAX_UPLOAD_BYTES.")
    error = {"code": "upload_too_large", "message": message, "field": "file", "line": None}
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def spooled_upload(request: Request, field: str = "file") -> AsyncIterator[tuple[Path, str, str]]:
    """Yield (path on disk, client file name, name) for a multipart or raw-body upload; the file is removed after."""
    with tempfile.TemporaryDirectory(prefix="lorastudio-upload-") as tmp:
        target = Path(tmp) / "upload"
        # A urlencoded form cannot hold a file, but it is a form (the CSRF check may have read it already).
        if request.headers.get("content-type", "").startswith(("multipart/form-data",
                                                                "application/x-www-form-urlencoded")):
            filename, name = await _from_form(request, field, target)
        else:
            filename, name = request.query_params.get("filename", ""), request.query_params.get("name", "")
            with target.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
        filename, name = safe_filename(filename), CONTROL_CHARS.sub("", name)
        if not filename:
            raise StudioError("invalid", "missing_filename", "Name the file (multipart file name or ?filename=) "
                              "so its type can be told: .jsonl, .json, .csv or .parquet.", field="file")
        yield target, filename, name


def safe_filename(raw: str) -> str:
    """The last component of a client's file name, without control characters; it is a label, never a path."""
    # Browsers on Windows and some clients send full paths; both separators count, whatever the server's OS.
    name = CONTROL_CHARS.sub("", raw).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "" if name in (".", "..") else name[:255]


async def _from_form(request: Request, field: str, target: Path) -> tuple[str, str]:
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise StudioError("invalid", "missing_file", f"Attach the dataset as the form field '{field}'.", field=field)
    with target.open("wb") as out:
        shutil.copyfileobj(upload.file, out, COPY_CHUNK)
    await upload.close()
    name = form.get("name")
    return upload.filename or "", name if isinstance(name, str) else ""
