"""Exports of a registered adapter version over JSON: request one (merged, gguf, gguf_lora), follow it, download
its verified files (streamed, each with its sha256)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.core.models import AdapterExport, AdapterExportFile, AdapterVersion, RegisteredAdapter
from app.core.services import exports as export_service
from app.core.services import registry
from app.deps import AdapterDep, CurrentUser, ResourcesDep, RowId, SessionDep
from app.downloads import blob_stream

router = APIRouter(tags=["exports"])
VersionNumber = Annotated[int, PathParam(ge=1, le=10**9)]
FileName = Annotated[str, PathParam(min_length=1, max_length=255)]


class ExportIn(BaseModel):
    """The format to export a version to."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(max_length=40, description="merged (16-bit safetensors), gguf (f16 and Q8_0) or gguf_lora "
                        "(the adapter as GGUF LoRA, with the base as f16 GGUF)")


class ExportFileOut(BaseModel):
    """A verified file of an export."""

    name: str
    size: int
    sha256: str
    url: str = Field(description="Where to download it (streamed; the X-Content-SHA256 header repeats its hash)")


class ExportOut(BaseModel):
    """An export: its state, the stage the exporter is in, its verification report and its files."""

    id: int
    adapter: str
    version: int
    format: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled")
    stage: str
    progress_done: int
    progress_total: int
    error: str | None
    report: dict[str, Any] = Field(description="Verification figures, timings and sizes, as the exporter gave them")
    agreement: float | None = Field(description="The verification's agreement with the adapter on its base")
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    files: list[ExportFileOut]


def export_out(export: AdapterExport, adapter: RegisteredAdapter, version: AdapterVersion,
               files: list[AdapterExportFile]) -> ExportOut:
    """The JSON shape of an export (also what the adapter's page reads)."""
    return ExportOut(
        id=export.id, adapter=adapter.name, version=version.version, format=export.format, status=export.status,
        stage=export.stage, progress_done=export.progress_done, progress_total=export.progress_total,
        error=export.error, report=export.report, agreement=export_service.agreement(export.report),
        created_by=export.created_by, created_at=export.created_at, started_at=export.started_at,
        finished_at=export.finished_at,
        files=[ExportFileOut(name=f.name, size=f.size, sha256=f.sha256,
                             url=f"/api/exports/{export.id}/files/{quote(f.name)}") for f in files])


def _out(session: Session, export: AdapterExport) -> ExportOut:
    version = session.get(AdapterVersion, export.version_id)
    adapter = session.get(RegisteredAdapter, version.adapter_id)
    return export_out(export, adapter, version, export_service.files(session, export.id))


@router.post("/api/adapters/{name}/versions/{version}/exports", status_code=status.HTTP_202_ACCEPTED,
             response_model=ExportOut)
def request_export(adapter: AdapterDep, version: VersionNumber, body: ExportIn, session: SessionDep,
                   user: CurrentUser) -> ExportOut:
    """Export a version to a format: queued (202), or the export of that format already queued, running or done."""
    found = registry.version_of(session, adapter, version)
    return _out(session, export_service.request_export(session, user, adapter, found, body.format))


@router.get("/api/adapters/{name}/versions/{version}/exports", response_model=list[ExportOut])
def list_exports(adapter: AdapterDep, version: VersionNumber, session: SessionDep) -> list[ExportOut]:
    """A version's exports, newest first."""
    found = registry.version_of(session, adapter, version)
    exports = export_service.list_exports(session, found)
    files = export_service.files_of(session, [e.id for e in exports])
    return [export_out(e, adapter, found, files[e.id]) for e in exports]


@router.get("/api/exports/{export_id}", response_model=ExportOut)
def get_export(export_id: RowId, session: SessionDep, user: CurrentUser) -> ExportOut:
    """One export (another user's reads as missing)."""
    return _out(session, export_service.get_export(session, user, export_id))


@router.post("/api/exports/{export_id}/cancel", response_model=ExportOut)
def cancel_export(export_id: RowId, session: SessionDep, user: CurrentUser) -> ExportOut:
    """Cancel a queued export, or have a running one stopped (nothing of it is stored); 409 once it has ended."""
    export = export_service.cancel_export(session, export_service.get_export(session, user, export_id))
    return _out(session, export)


@router.get("/api/exports/{export_id}/files/{file_name:path}", response_class=StreamingResponse)
def download_file(export_id: RowId, file_name: FileName, session: SessionDep, user: CurrentUser,
                  res: ResourcesDep) -> StreamingResponse:
    """A succeeded export's file, streamed, its sha256 in X-Content-SHA256 (409 before it succeeded)."""
    export = export_service.get_export(session, user, export_id)
    found = export_service.file_for_download(session, export, file_name)
    plain = found.name.rsplit("/", 1)[-1].replace('"', "")
    headers = {"Content-Disposition": f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(plain)}",
               "Content-Length": str(found.size), "X-Content-SHA256": found.sha256}
    return StreamingResponse(blob_stream(res.session_factory, found.blob_id), media_type="application/octet-stream",
                             headers=headers)
