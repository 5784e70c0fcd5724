"""Large blobs' bytes in an S3-compatible object store (AWS S3, MinIO, …) through boto3: the one module of the studio
that speaks S3. The database keeps every blob's metadata; app.core.blobs decides which bytes come here.

Each blob's object has a key of its own, `<prefix>blobs/<random hex>`, recorded on its row (Blob.object_key) and never
given to another blob. Blobs stay content-addressed in the database (one row per sha256, so identical bytes keep one
object); a key is not named by the hash because the hash is known only once the bytes have gone up, and because a
name two blobs could share (one being deleted, one being stored again) would let the delete take the new one's bytes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.errors import StudioError

# A stream goes up in parts of PART_SIZE (S3: 5 MiB at least but the last, 10,000 at most: 160 GB a stream); files go
# up and down in parallel parts of that size, TRANSFER_THREADS at a time, so memory stays at a few parts.
PART_SIZE = 16 * 1024**2
TRANSFER_THREADS = 4
READ_CHUNK = 1024**2  # iter_object's pieces, the size the database's chunks have
MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
DELETE_BATCH = 1000  # DeleteObjects' most keys per call


class BlobUnavailable(StudioError):
    """A blob's bytes cannot be read: its object is gone, or this process has no object store settings."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__("unavailable", code, message)


@dataclass(frozen=True)
class ObjectStore:
    """One bucket (and key prefix) of an S3-compatible store; min_bytes: blobs this big or bigger are written here
    (None: none are, blob_store is 'database', but those already here stay readable)."""

    client: Any
    bucket: str
    prefix: str
    min_bytes: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore | None:
        """The store the settings name (None without s3_bucket): a worker on another host needs only these."""
        if not settings.s3_bucket:
            return None
        # boto3 takes ~0.3 s to import: only processes of a studio that uses a bucket pay it.
        import boto3
        from botocore.config import Config

        endpoint = settings.s3_endpoint_url or None  # an empty variable means AWS, as an unset one does
        keys = {"aws_access_key_id": settings.s3_access_key_id,
                "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value()}
        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,  # the web streams several downloads at once, each on a connection of its own
            # MinIO and most self-hosted stores want the bucket in the path, not in the host name.
            s3={"addressing_style": "path" if endpoint else "auto"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=settings.s3_region, config=config,
            **(keys if settings.s3_access_key_id else {}),
        )
        min_bytes = settings.blob_s3_min_bytes if settings.blob_store == "s3" else None
        return cls(client, settings.s3_bucket, settings.s3_prefix, min_bytes)

    def takes(self, size: int) -> bool:
        """Whether a blob of size bytes is written here."""
        return self.min_bytes is not None and size >= self.min_bytes

    def new_key(self) -> str:
        """A key no other blob has had or will have."""
        return f"{self.prefix}blobs/{uuid.uuid4().hex}"

    def upload_file(self, path: Path, key: str) -> None:
        """Put a file at key, in parallel parts (boto3's managed transfer)."""
        self.client.upload_file(str(path), self.bucket, key, Config=_transfer_config())

    def upload_stream(self, key: str, chunks: Iterable[bytes]) -> None:
        """Put a stream of unknown length at key as a multipart upload, one part in memory at a time; a failure
        (of the stream or of the store) aborts the upload, so no parts are left behind."""
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts = [self._put_part(key, upload_id, number, data)
                     for number, data in enumerate(_parts(chunks), start=1)]
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            # If the abort fails too (the store is away), the sweep aborts the upload later (abort_uploads_older_than).
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def iter_object(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Yield the object's bytes as they stream in (one GET)."""
        body = self._get(key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def read_range(self, key: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the object (one ranged GET); stop must not pass its end, start must be below it."""
        return self._get(key, Range=f"bytes={start}-{stop - 1}")["Body"].read()

    def download_file(self, key: str, path: Path) -> None:
        """Write the object to path, in parallel ranged parts (boto3's managed transfer)."""
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, key, str(path), Config=_transfer_config())
        except ClientError as error:
            raise self._unavailable(key, error) from error

    def _get(self, key: str, **options: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, **options)
        except ClientError as error:
            raise self._unavailable(key, error) from error

    def _unavailable(self, key: str, error: Exception) -> Exception:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        if code not in MISSING_CODES:
            return error
        return BlobUnavailable("blob_object_missing", f"The object {key} is missing from bucket {self.bucket}: the "
                               "blob's bytes are gone (deleted outside the studio, or another bucket is configured).")

    def delete(self, keys: Iterable[str]) -> None:
        """Delete these objects (absent ones count as deleted); raises if the store refused any."""
        keys = list(keys)
        for first in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[first : first + DELETE_BATCH]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                refused = ", ".join(f"{e['Key']} ({e.get('Code')})" for e in answer["Errors"])
                raise RuntimeError(f"the object store did not delete {refused}")

    def pages_older_than(self, moment: datetime) -> Iterator[list[str]]:
        """The keys of this studio's blob objects last written before moment, a listing page at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"):
            yield [item["Key"] for item in page.get("Contents", []) if item["LastModified"] < moment]

    def abort_uploads_older_than(self, moment: datetime) -> int:
        """Abort the multipart uploads begun before moment (a process killed while streaming); returns how many."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < moment:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        return aborted


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                          max_concurrency=TRANSFER_THREADS)


def _parts(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """chunks regrouped into PART_SIZE pieces; the last may be shorter (and is empty only for an empty stream: an
    upload needs one part)."""
    buffer, sent = bytearray(), False
    for piece in chunks:
        buffer += piece
        while len(buffer) >= PART_SIZE:
            yield bytes(buffer[:PART_SIZE])
            del buffer[:PART_SIZE]
            sent = True
    if buffer or not sent:
        yield bytes(buffer)
