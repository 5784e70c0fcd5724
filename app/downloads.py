"""Stream stored blobs (one file, or a zip of several): written as it is read, no whole file in memory or on disk."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker

from app.core import blobs
from app.core.db import session_scope


class _Pipe:
    """A write-only, unseekable sink; zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def adapter_zip_stream(factory: sessionmaker[Session], files: list[tuple[str, int]],
                       written: dict[str, bytes] | None = None) -> Iterator[bytes]:
    """Yield the zip's bytes file by file, chunk by chunk (its own session: the request's is closed by now); files
    given as bytes in `written` (a generated model card) come first and replace stored ones of the same name."""
    pipe = _Pipe()
    written = written or {}
    with session_scope(factory) as session, zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in written.items():
            archive.writestr(name, data)
            yield pipe.take()
        for name, blob_id in files:
            if name in written:
                continue
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in blobs.iter_blob(session, blob_id):
                    member.write(chunk)
                    yield pipe.take()
            yield pipe.take()
    yield pipe.take()


def blob_stream(factory: sessionmaker[Session], blob_id: int) -> Iterator[bytes]:
    """Yield one blob's bytes chunk by chunk, in a session of its own (the request's is closed by now)."""
    with session_scope(factory) as session:
        yield from blobs.iter_blob(session, blob_id)
