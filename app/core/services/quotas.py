"""Per-user quotas: how many runs one user may have queued and training at once, and how many bytes they may store.

A user's own limit (users.max_*, set by an admin with `lorastudio users set-quota`) wins; NULL means the studio
default (Settings.quota_*); 0 means no limit. The running-runs limit is not refused anywhere: the fair claim
(services.runs.claim_next) leaves such a user's runs queued until one of theirs ends. Storage is measured from
the sizes of the blobs the user's datasets and runs hold (each blob once: a file stored twice is stored once).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.errors import StudioError
from app.core.models import (
    AdapterExport,
    AdapterExportFile,
    AdapterVersion,
    AdapterVersionFile,
    Artifact,
    Blob,
    Dataset,
    RegisteredAdapter,
    Run,
    RunStatus,
    User,
)

UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
         "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


@dataclass(frozen=True)
class Limits:
    """A user's effective limits; None: no limit."""

    queued_runs: int | None
    running_runs: int | None
    storage_bytes: int | None


@dataclass(frozen=True)
class Usage:
    """What a user holds now."""

    queued_runs: int
    running_runs: int
    storage_bytes: int


def _effective(own: int | None, default: int) -> int | None:
    value = default if own is None else own
    return value or None  # 0: no limit


def limits_of(user: User | None, settings: Settings | None = None) -> Limits:
    """The limits that apply to user (None, an internal caller: the studio defaults)."""
    settings = settings or get_settings()
    own = (user.max_queued_runs, user.max_running_runs, user.max_storage_bytes) if user else (None, None, None)
    return Limits(_effective(own[0], settings.quota_queued_runs), _effective(own[1], settings.quota_running_runs),
                  _effective(own[2], settings.quota_storage_bytes))


def _owned(column, owner_id: int | None):  # noqa: ANN001, ANN202
    return column.is_(None) if owner_id is None else column == owner_id


def run_count(session: Session, owner_id: int | None, status: RunStatus) -> int:
    """How many of the owner's runs are in one state."""
    return session.scalar(select(func.count()).select_from(Run).where(_owned(Run.owner_id, owner_id),
                                                                      Run.status == status)) or 0


def storage_used(session: Session, owner_id: int | None) -> int:
    """Bytes of the distinct blobs the owner's datasets (original, canonical rows, index), runs' artifacts
    (adapters, checkpoints), registered versions and their exports (merged models, GGUF files) hold."""
    mine = _owned(RegisteredAdapter.owner_id, owner_id)
    ids = union(*(select(column).where(_owned(Dataset.owner_id, owner_id), column.is_not(None))
                  for column in (Dataset.blob_id, Dataset.canonical_blob_id, Dataset.canonical_index_blob_id)),
                select(Artifact.blob_id).join(Run, Run.id == Artifact.run_id).where(_owned(Run.owner_id, owner_id)),
                select(AdapterVersionFile.blob_id).join(AdapterVersion).join(RegisteredAdapter).where(mine),
                select(AdapterExportFile.blob_id).join(AdapterExport).join(AdapterVersion)
                .join(RegisteredAdapter).where(mine))
    return session.scalar(select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.id.in_(select(ids.subquery()))))


def usage_of(session: Session, user: User | None) -> Usage:
    """What user holds now."""
    owner = user.id if user else None
    return Usage(run_count(session, owner, RunStatus.queued), run_count(session, owner, RunStatus.running),
                 storage_used(session, owner))


def check_can_queue(session: Session, user: User | None, settings: Settings | None = None) -> None:
    """Refuse a new run while user has their quota of queued runs, or has used up their storage."""
    limits = limits_of(user, settings)
    owner = user.id if user else None
    if limits.queued_runs is not None and run_count(session, owner, RunStatus.queued) >= limits.queued_runs:
        raise StudioError("conflict", "queued_runs_quota", f"You have {limits.queued_runs} runs queued already, your "
                          "quota of queued runs (max_queued_runs): wait for one to start, or cancel one, then try "
                          "again; an admin can raise it with `lorastudio users set-quota NAME --queued N`.")
    check_storage(session, user, 0, settings)


def check_storage(session: Session, user: User | None, adding: int, settings: Settings | None = None) -> None:
    """Refuse storing `adding` more bytes for user beyond their storage quota (adding 0: refuse once it is full)."""
    limit = limits_of(user, settings).storage_bytes
    if limit is None:
        return
    used = storage_used(session, user.id if user else None)
    if used + adding > limit or (adding == 0 and used >= limit):
        more = f" and this needs {format_bytes(adding)} more" if adding else ""
        raise StudioError("too_large" if adding else "conflict", "storage_quota",
                          f"You store {format_bytes(used)} of your {format_bytes(limit)} storage quota "
                          f"(max_storage_bytes){more}: delete datasets or runs you no longer need, or ask an admin "
                          "to raise it (`lorastudio users set-quota NAME --storage 20GB`).")


def parse_bytes(text: str) -> int:
    """'10GB', '512MiB', '1000' → bytes; a ValueError naming the accepted form otherwise."""
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGTIB")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in UNITS or value < 0:
        raise ValueError(f"'{text}' is not a size: write a number with an optional unit, e.g. 500MB, 10GB, 2GiB")
    return int(value * UNITS[unit])


def format_bytes(size: int) -> str:
    """1234567 → '1.2 MB'."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
