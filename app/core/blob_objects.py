"""The database's side of blobs kept in the object store: which store a unit of work uses, and deleting objects no
blob names any more (after the deleting unit of work commits, or by a sweep of what a failure left behind)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.core.models import Blob
from app.core.object_store import BlobUnavailable, ObjectStore

log = logging.getLogger(__name__)
# session.info: the process's ObjectStore, or None (every blob in the database). Resources.session_factory puts it in
# every session it makes, so a unit of work reads and writes where its process's settings say.
STORE_KEY = "object_store"
DOOMED_KEY = "doomed_objects"  # session.info: keys to delete once the unit of work commits


def object_store_of(session: Session) -> ObjectStore | None:
    """The object store of the session's process (None: none configured)."""
    return session.info.get(STORE_KEY)


def store_info(session: Session) -> dict[str, ObjectStore | None]:
    """Info for another session that must use the same object store (blob_staging's own units of work)."""
    return {STORE_KEY: object_store_of(session)}


def store_to_read(session: Session, blob_id: int, key: str) -> ObjectStore:
    """The store holding blob_id's object; an error naming the missing settings when this process has none."""
    store = object_store_of(session)
    if store is None:
        raise BlobUnavailable("object_store_not_configured", f"Blob {blob_id} is kept in the object store (object "
                              f"{key}), but this process has no object store settings: give it the LORASTUDIO_S3_* "
                              "settings of the studio (LORASTUDIO_S3_BUCKET at least).")
    return store


def delete_after_commit(session: Session, keys: Sequence[str]) -> None:
    """Delete these objects once the session's unit of work commits (nothing is deleted if it rolls back)."""
    if not keys:
        return
    # Listening for good, not once=True: a function listened to once stays registered after it fired, so listening
    # again is ignored and a second unit of work of the same session would never delete its objects.
    if not event.contains(session, "after_commit", _delete_doomed):
        event.listen(session, "after_commit", _delete_doomed)
        event.listen(session, "after_rollback", _spare_doomed)
    session.info.setdefault(DOOMED_KEY, []).extend(keys)


def _delete_doomed(session: Session) -> None:
    # SQLAlchemy also says after_commit when a savepoint is released: the unit of work has not committed yet then.
    if session.get_nested_transaction() is not None:
        return
    keys = session.info.pop(DOOMED_KEY, [])
    if not keys:
        return
    store = object_store_of(session)
    if store is None:
        log.warning("objects %s of deleted blobs stay in the bucket: this process has no object store settings", keys)
        return
    try:
        # Checked again: a savepoint that deleted a row may have been rolled back while its unit committed.
        store.delete(unnamed(session.get_bind(), keys))
    except Exception:  # the rows are gone either way: a failed delete only costs space until the sweep
        log.warning("could not delete objects %s of deleted blobs; the sweep will", keys, exc_info=True)


def _spare_doomed(session: Session) -> None:
    # Only the unit of work's own rollback (not a savepoint's) spares them all; a row whose delete a savepoint undid
    # is found still naming its object when the unit commits, and that object is kept then.
    if session.get_nested_transaction() is None:
        session.info.pop(DOOMED_KEY, None)


def unnamed(bind: Engine | Connection | Session, keys: Sequence[str]) -> list[str]:
    """Those of keys that no blob row names (keys are never reused, so such an object is garbage for good)."""
    query = select(Blob.object_key).where(Blob.object_key.in_(list(keys)))
    if isinstance(bind, Engine):  # after a commit: a connection of its own (the session's transaction is over)
        with bind.connect() as connection:
            named = set(connection.scalars(query))
    else:
        named = set(bind.scalars(query))
    return [key for key in keys if key not in named]


def sweep(session: Session, older_than: timedelta) -> int:
    """Delete the objects older than older_than that no blob names (left by a unit of work that rolled back after its
    upload, a process killed meanwhile, or a delete that failed), and abort multipart uploads as old; returns how
    many objects went. older_than must exceed any unit of work's length: an upload's row commits with its unit."""
    store = object_store_of(session)
    if store is None:
        return 0
    moment = utcnow() - older_than
    store.abort_uploads_older_than(moment)
    swept = 0
    for keys in store.pages_older_than(moment):
        garbage = unnamed(session, keys) if keys else []
        store.delete(garbage)
        swept += len(garbage)
    if swept:
        log.info("removed %s objects no blob names any more from the object store", swept)
    return swept
