"""Export use cases: request an export of a registered version to a format (checked, reused when one is already
queued, running or done, else queued after commit), list and read them, claim, beat, record progress, cancel,
finish (every verified file stored as a blob with the report in one unit of work) and fail; the janitor queues
again an export whose worker stopped beating (reap_lost_exports)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import blob_staging, jobs
from app.core.access import can_see
from app.core.db import db_now, utcnow
from app.core.errors import StudioError, not_found
from app.core.generation.adapter_hash import adapter_files, adapter_hash
from app.core.models import AdapterExport, AdapterExportFile, AdapterVersion, RegisteredAdapter, User
from app.core.repositories.artifacts import PEFT_FILES
from app.core.services import audit, quotas
from worker.export.inputs import FORMATS  # torch-free: the format names and what each gives

EXPORT_TASK = "exports.run"
REUSED = ("queued", "running", "succeeded")  # an export in one of these is returned instead of a new one
FINISHED = ("succeeded", "failed", "cancelled")
MEDIA_TYPE = "application/octet-stream"


def request_export(session: Session, user: User | None, adapter: RegisteredAdapter, version: AdapterVersion,
                   fmt: str) -> AdapterExport:
    """The version's export to fmt: one already queued, running or succeeded, else a new one queued after commit
    (422 naming `format` for an unknown format; 409 when the version's files are gone)."""
    if fmt not in FORMATS:
        raise StudioError("invalid", "invalid_format", f"Unknown export format {fmt[:40]!r}; choose from "
                          f"{', '.join(FORMATS)}.", field="format")
    existing = session.scalars(select(AdapterExport).where(
        AdapterExport.version_id == version.id, AdapterExport.format == fmt, AdapterExport.status.in_(REUSED))
        .order_by(AdapterExport.id.desc())).first()
    if existing is not None:
        return existing
    check_files(session, adapter, version)
    quotas.check_storage(session, user, 0)  # an export stores a model's worth of files: refused once storage is full
    export = AdapterExport(version_id=version.id, format=fmt, status="queued", stage="", report={},
                           created_by=user.username if user else "")
    made = insert_unless_live(session, export)
    if made is not export:
        return made
    audit.record(session, "adapter.export", f"adapter {adapter.id} '{adapter.name}' v{version.version}",
                 owner_id=adapter.owner_id, format=fmt, export_id=export.id)
    jobs.enqueue(session, EXPORT_TASK, export_id=export.id)
    return export


def insert_unless_live(session: Session, export: AdapterExport) -> AdapterExport:
    """Store export, or return the live one of its version and format that a concurrent request stored first (the
    partial unique index uq_adapter_exports_live refuses a second)."""
    try:
        with session.begin_nested():
            session.add(export)
            session.flush()
        return export
    except IntegrityError:
        return session.scalars(select(AdapterExport).where(
            AdapterExport.version_id == export.version_id, AdapterExport.format == export.format,
            AdapterExport.status.in_(REUSED))).one()


def check_files(session: Session, adapter: RegisteredAdapter, version: AdapterVersion) -> None:
    """Refuse (409) a version whose PEFT files are gone or no longer hash to its sha256: nothing to export."""
    files = adapter_files(session, 0, None, version.id)
    names = {f.name for f in files}
    if not files or not set(PEFT_FILES) <= names or adapter_hash((f.name, f.blob_sha256) for f in files) != \
            version.sha256:
        raise StudioError("conflict", "version_files_missing", f"The files of {adapter.name}:v{version.version} "
                          "are gone or no longer match its sha256, so it cannot be exported.", field="version")


def list_exports(session: Session, version: AdapterVersion) -> list[AdapterExport]:
    """A version's exports, newest first."""
    return list(session.scalars(select(AdapterExport).where(AdapterExport.version_id == version.id)
                                .order_by(AdapterExport.id.desc())))


def exports_of(session: Session, version_ids: Sequence[int]) -> dict[int, list[AdapterExport]]:
    """The exports of several versions (an adapter's page), newest first per version."""
    found: dict[int, list[AdapterExport]] = {v: [] for v in version_ids}
    if version_ids:
        for export in session.scalars(select(AdapterExport).where(AdapterExport.version_id.in_(list(version_ids)))
                                      .order_by(AdapterExport.id.desc())):
            found[export.version_id].append(export)
    return found


def get_export(session: Session, user: User | None, export_id: int) -> AdapterExport:
    """An export of a version user may see, or 404 (another user's reads as missing, as the registry does)."""
    row = session.execute(select(AdapterExport, RegisteredAdapter.owner_id)
                          .join(AdapterVersion, AdapterVersion.id == AdapterExport.version_id)
                          .join(RegisteredAdapter, RegisteredAdapter.id == AdapterVersion.adapter_id)
                          .where(AdapterExport.id == export_id)).first()
    if row is None or not can_see(user, row[1]):
        raise not_found("export", export_id)
    return row[0]


def files(session: Session, export_id: int) -> list[AdapterExportFile]:
    """An export's stored files by name."""
    return list(session.scalars(select(AdapterExportFile).where(AdapterExportFile.export_id == export_id)
                                .order_by(AdapterExportFile.name)))


def files_of(session: Session, export_ids: Sequence[int]) -> dict[int, list[AdapterExportFile]]:
    """The stored files of several exports, by name."""
    found: dict[int, list[AdapterExportFile]] = {e: [] for e in export_ids}
    if export_ids:
        for file in session.scalars(select(AdapterExportFile).where(AdapterExportFile.export_id.in_(list(export_ids)))
                                    .order_by(AdapterExportFile.name)):
            found[file.export_id].append(file)
    return found


def file_for_download(session: Session, export: AdapterExport, name: str) -> AdapterExportFile:
    """A succeeded export's file (409 before it succeeded; 404 for a name it does not have)."""
    if export.status != "succeeded":
        raise StudioError("conflict", "export_not_ready", f"Export {export.id} is {export.status}; its files can be "
                          "downloaded once it has succeeded (verified).")
    found = session.scalars(select(AdapterExportFile).where(AdapterExportFile.export_id == export.id,
                                                            AdapterExportFile.name == name)).first()
    if found is None:
        raise StudioError("not_found", "export_file_not_found", f"Export {export.id} has no file {name[:255]!r}.")
    return found


def agreement(report: dict[str, Any]) -> float | None:
    """The verification's agreement (teacher-forced top-1, 0..1) of the export's least faithful file (the report
    has one check per file verified: merged, f16, q8_0, lora), if it gives any."""
    checks = report.get("checks")
    values = [c.get("top1") for c in checks.values() if isinstance(c, dict)] if isinstance(checks, dict) else []
    values = [v for v in values if isinstance(v, int | float)]
    return min(values) if values else None


def _transition(session: Session, export_id: int, from_: Sequence[str], *where: Any, **values: Any) -> bool:
    """Atomically move an export out of one of the given states (and meeting `where`); False if it was in none."""
    result = session.execute(update(AdapterExport)
                             .where(AdapterExport.id == export_id, AdapterExport.status.in_(list(from_)), *where)
                             .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def claim_export(session: Session, export_id: int) -> int | None:
    """Take a queued export: its attempt number, or None if another delivery already did (or it was cancelled)."""
    now = utcnow()
    if not _transition(session, export_id, ["queued"], status="running", started_at=now, heartbeat_at=db_now(session),
                       stage="starting", attempt=AdapterExport.attempt + 1):
        return None
    return session.scalar(select(AdapterExport.attempt).where(AdapterExport.id == export_id))


def beat(session: Session, export_id: int, attempt: int) -> str:
    """The job's heartbeat: "go", "cancel" (a cancel was asked for) or "lost" (no longer this attempt's)."""
    if not _transition(session, export_id, ["running"], AdapterExport.attempt == attempt, heartbeat_at=db_now(session)):
        return "lost"
    cancel = session.scalar(select(AdapterExport.cancel_requested).where(AdapterExport.id == export_id))
    return "cancel" if cancel else "go"


def record_progress(session: Session, export_id: int, stage: str | None, done: int, total: int) -> None:
    """The stage the child is in (None: unchanged) and how many of its stages are done."""
    values: dict[str, Any] = {"progress_done": done, "progress_total": total}
    if stage is not None:
        values["stage"] = stage[:500]
    _transition(session, export_id, ["running"], **values)


def cancel_export(session: Session, export: AdapterExport) -> AdapterExport:
    """Cancel a queued export at once; ask a running one to stop (its job ends it, storing nothing); refuse a
    finished one (409)."""
    if _transition(session, export.id, ["queued"], status="cancelled", cancel_requested=True, finished_at=utcnow()) \
            or _transition(session, export.id, ["running"], cancel_requested=True):
        session.refresh(export)
        return export
    session.refresh(export)
    raise StudioError("conflict", "export_finished", f"Export {export.id} is already {export.status}; nothing to "
                      "cancel.")


def end_cancelled(session: Session, export_id: int) -> bool:
    """A running export whose job stopped on request: cancelled, nothing stored."""
    return _transition(session, export_id, ["running"], status="cancelled", finished_at=utcnow())


def finish_export(session: Session, export_id: int, out_dir: Path, written: list[dict[str, Any]],
                  report: dict[str, Any]) -> bool:
    """Store every file the child wrote (name, size, sha256, relative to out_dir) as a blob, streamed from disk,
    with the report, in one unit of work; False (nothing kept) if the export is no longer running (cancelled,
    deleted with its version). A file that is missing, outside out_dir or not what the child said is a
    StudioError, and nothing is kept either."""
    if not written:
        raise StudioError("invalid", "export_no_files", "The export wrote no file.")
    paths = [_inside(out_dir, item["name"]) for item in written]
    staged: list[blob_staging.Staged] = []
    try:
        for path in paths:  # in short units of work of their own: hundreds of MB must not hold SQLite's lock
            staged.append(blob_staging.stage_file(session, path, MEDIA_TYPE))
        with session.begin_nested():
            blob_staging.lock_for_adoption(session, staged)
            if not _transition(session, export_id, ["running"], status="succeeded", report=report, error=None,
                               stage="done", finished_at=utcnow()):
                blob_staging.discard(session, staged)
                return False
            for item, stage in zip(written, staged, strict=True):
                blob = blob_staging.adopt(session, stage)
                if (blob.sha256, blob.size) != (item["sha256"], item["size"]):
                    raise StudioError("conflict", "export_file_changed", f"{item['name']} is {blob.size} bytes with "
                                      f"sha256 {blob.sha256}, not the {item['size']} bytes with sha256 "
                                      f"{item['sha256']} the export reported.")
                session.add(AdapterExportFile(export_id=export_id, name=item["name"], blob_id=blob.id,
                                              size=blob.size, sha256=blob.sha256))
            session.flush()
        return True
    except BaseException:
        blob_staging.discard(session, staged)
        raise


def _inside(out_dir: Path, name: str) -> Path:
    """The file `name` under out_dir; a name that leaves it, or no file, is refused."""
    root = out_dir.resolve()
    path = (root / name).resolve()
    if not name or not path.is_relative_to(root) or not path.is_file():
        raise StudioError("invalid", "export_file_missing", f"The export reported {name[:255]!r}, which is not a file "
                          "in its out folder.")
    return path


def fail_export(session: Session, export_id: int, reason: str) -> None:
    """Record why an export could not be made (nothing of it is stored)."""
    _transition(session, export_id, ["queued", "running"], status="failed", error=reason[:4000],
                finished_at=utcnow())


def reap_lost_exports(session: Session, silent_for: timedelta, max_attempts: int) -> dict[int, str]:
    """Every running export silent for longer than silent_for, as an evaluation's: {export id: "queued" (sent
    again after commit), "failed" (after max_attempts) or "cancelled" (a cancel was pending)}."""
    cutoff, seconds = db_now(session) - silent_for, int(silent_for.total_seconds())
    silent = session.scalars(select(AdapterExport).where(AdapterExport.status == "running",
                                                         AdapterExport.heartbeat_at < cutoff)).all()
    outcomes = {}
    for export in silent:
        still_lost = (AdapterExport.attempt == export.attempt, AdapterExport.heartbeat_at < cutoff)
        if export.cancel_requested:
            outcome, values = "cancelled", {"finished_at": utcnow()}
        elif export.attempt < max_attempts:
            outcome, values = "queued", {"heartbeat_at": None, "progress_done": 0, "stage": ""}
        else:
            outcome, values = "failed", {"finished_at": utcnow(), "error": (
                f"Its worker stopped sending heartbeats (for over {seconds} s) on each of {export.attempt} attempts: "
                "it crashed, was killed or lost the database every time, so it is not tried again.")}
        if _transition(session, export.id, ["running"], *still_lost, status=outcome, **values):
            outcomes[export.id] = outcome
            if outcome == "queued":
                jobs.enqueue(session, EXPORT_TASK, export_id=export.id)
    return outcomes
