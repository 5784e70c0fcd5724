"""Receive an uploaded file onto disk in chunks, capped in size while it streams; check and store it off the loop."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from fastapi import FastAPI, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from app.body_limit import counting, declared_over
from app.core.config import Settings
from app.core.datasets.limits import limits_from
from app.core.errors import StudioError
from app.core.models import Dataset, User
from app.core.services import datasets as dataset_service

COPY_CHUNK = 1024 * 1024
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
SPOOL_PREFIX, LOCK_NAME = "upload-", ".lock"
# A spool folder without its lock file is one a process died creating (between mkdtemp and the lock).
UNLOCKED_STALE_S = 3600


class UploadTooLarge(Exception):
    """The body passed the configured limit."""


class BodySizeLimit:
    """ASGI middleware: count body bytes as they arrive and answer 413 past the limit (app.body_limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if declared_over(scope, self.limit):
            return await _too_large(send, self.limit)
        try:
            await self.app(scope, counting(receive, self.limit, UploadTooLarge), send)
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


class UploadsBusy(StudioError):
    """Every upload slot of this process is taken; the answer says when to try again."""

    def __init__(self, slots: int, retry_after_s: int) -> None:
        super().__init__("unavailable", "uploads_busy", f"{slots} uploads are being received and checked already; "
                         f"try again in {retry_after_s} s (LORASTUDIO_MAX_CONCURRENT_UPLOADS).", field="file")
        self.headers = {"Retry-After": str(retry_after_s)}


class UploadSlots:
    """How many uploads one web process receives and checks at once (the event loop is single-threaded: no lock)."""

    def __init__(self, size: int, retry_after_s: int) -> None:
        self.size, self.retry_after_s, self.used = size, retry_after_s, 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Take a slot for the block, or raise UploadsBusy at once (before any of the body is read)."""
        if self.used >= self.size:
            raise UploadsBusy(self.size, self.retry_after_s)
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1


@dataclass(frozen=True)
class Spooled:
    """An upload on disk: its file, the client's file name and dataset name, and its private scratch folder."""

    path: Path
    filename: str
    name: str
    folder: Path


async def store_upload(request: Request, session: Session, user: User | None) -> Dataset:
    """Receive the upload on the loop, then validate, canonicalise and store it in a worker thread.

    The loop keeps serving other requests meanwhile; the session's unit of work commits after, as for any route."""
    settings: Settings = request.app.state.resources.settings
    with _slots(request.app, settings).hold():
        async with spooled_upload(request, settings=settings) as spool:
            work = partial(dataset_service.create_dataset, session, spool.path, spool.filename, spool.name,
                           user=user, limits=limits_from(settings), scratch=spool.folder)
            return await anyio.to_thread.run_sync(work)


def _slots(app: FastAPI, settings: Settings) -> UploadSlots:
    slots = getattr(app.state, "upload_slots", None)
    if slots is None:
        slots = app.state.upload_slots = UploadSlots(settings.max_concurrent_uploads, settings.upload_retry_after_s)
    return slots


def upload_root(settings: Settings) -> Path:
    """The folder uploads are spooled under (LORASTUDIO_UPLOAD_DIR, else data_dir/uploads)."""
    return settings.upload_dir or settings.data_dir / "uploads"


@asynccontextmanager
async def spooled_upload(request: Request, field: str = "file", *,
                         settings: Settings | None = None) -> AsyncIterator[Spooled]:
    """Yield the multipart or raw-body upload spooled to disk; its folder is removed after, whatever happens."""
    settings = settings or request.app.state.resources.settings
    with _spool_folder(upload_root(settings)) as folder:
        target = folder / "upload"
        try:
            filename, name = await _receive(request, field, target)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise dataset_service.storage_full() from None
            raise
        filename, name = safe_filename(filename), CONTROL_CHARS.sub("", name)
        if not filename:
            raise StudioError("invalid", "missing_filename", "Name the file (multipart file name or ?filename=) "
                              "so its type can be told: .jsonl, .json, .csv or .parquet.", field="file")
        yield Spooled(target, filename, name, folder)


async def _receive(request: Request, field: str, target: Path) -> tuple[str, str]:
    """Write the body's file to target; (client file name, dataset name)."""
    # A urlencoded form cannot hold a file, but it is a form (the CSRF check may have read it already).
    if request.headers.get("content-type", "").startswith(("multipart/form-data",
                                                            "application/x-www-form-urlencoded")):
        return await _from_form(request, field, target)
    full: OSError | None = None
    with target.open("wb") as out:
        async for chunk in request.stream():
            if full is None:
                full = _write(out, chunk)
    if full is not None:
        raise full
    return request.query_params.get("filename", ""), request.query_params.get("name", "")


def _write(out: BinaryIO, chunk: bytes) -> OSError | None:
    """Write into the page cache (microseconds a chunk: the loop is not held); a full disk is returned, not raised,
    so the rest of the body is read and dropped and the client, still sending, can read the answer."""
    try:
        out.write(chunk)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return error
    return None


@contextlib.contextmanager
def _spool_folder(root: Path) -> Iterator[Path]:
    """A fresh folder under root, locked (flock) while in use so a sweep at start-up never takes a live one."""
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=root))
    lock = os.open(folder / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def sweep_spool(settings: Settings) -> int:
    """Remove the spool folders of processes that died mid-upload (their flock went with them); how many."""
    root, removed = upload_root(settings), 0
    for folder in root.glob(f"{SPOOL_PREFIX}*") if root.is_dir() else ():
        if _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _abandoned(folder: Path) -> bool:
    try:
        lock = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > UNLOCKED_STALE_S
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live upload holds it
    finally:
        os.close(lock)
    return True


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
    await anyio.to_thread.run_sync(_copy, upload.file, target)  # a gigabyte copy would hold the loop for seconds
    await upload.close()
    name = form.get("name")
    return upload.filename or "", name if isinstance(name, str) else ""


def _copy(source: BinaryIO, target: Path) -> None:
    source.seek(0)
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)
