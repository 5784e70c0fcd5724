"""The adapter registry over JSON: named adapters, their immutable versions with lineage, aliases moved (promote,
roll back) with an audit trail, a version's files as a zip. A version is generated with as `name:vN` or
`name:alias` on /v1, in the playground and in evaluations."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.core import adapter_import
from app.core.model_card import model_card
from app.core.models import AdapterVersionFile, RegisteredAdapter
from app.core.services import registry
from app.deps import MAX_ROW_ID, AdapterDep, CurrentUser, ResourcesDep, SessionDep, SettingsDep
from app.downloads import adapter_zip_stream

router = APIRouter(prefix="/api/adapters", tags=["adapters"])
AliasName = Annotated[str, PathParam(min_length=1, max_length=32)]
VersionNumber = Annotated[int, PathParam(ge=1, le=10**9)]


class RegisterIn(BaseModel):
    """A run's adapter (or its adapter of one kept step) to register as the next version of a named adapter."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="The adapter's name (made if new): letters, digits, "
                      "_ . -")
    run_id: int = Field(ge=1, le=MAX_ROW_ID, description="A succeeded run of yours (its final adapter), or any run "
                        "of yours with step")
    step: int | None = Field(None, ge=1, le=10**9, description="A step the run kept (run-<id>@step-<k>)")
    description: str = Field("", max_length=registry.MAX_DESCRIPTION, description="What this adapter is for")


class AliasIn(BaseModel):
    """Which version an alias points to."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=10**9, description="The version number (vN)")


class VersionOut(BaseModel):
    """One immutable version: where it came from, its files' identity and its lineage."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    source: str
    run_id: int | None
    step: int | None
    base_name: str
    sha256: str = Field(description="The hash of its files, recorded with every generation made with it")
    lineage: dict[str, Any]
    created_by: str
    created_at: datetime


class AdapterOut(BaseModel):
    """A named adapter with its versions (newest first) and aliases."""

    name: str
    description: str
    owner_id: int | None
    created_at: datetime
    aliases: dict[str, int] = Field(description="alias -> version number")
    versions: list[VersionOut]


def _out(session, adapter: RegisteredAdapter, *, lineage: bool = True) -> AdapterOut:  # noqa: ANN001
    versions = [VersionOut.model_validate(v) for v in registry.versions(session, adapter)]
    if not lineage:
        versions = [v.model_copy(update={"lineage": {}}) for v in versions]
    return AdapterOut(name=adapter.name, description=adapter.description, owner_id=adapter.owner_id,
                      created_at=adapter.created_at, aliases=registry.aliases(session, adapter), versions=versions)


@router.get("", response_model=list[AdapterOut])
def list_adapters(session: SessionDep, user: CurrentUser) -> list[AdapterOut]:
    """Your adapters, each with its versions (lineage left out: GET one for it)."""
    return [_out(session, a, lineage=False) for a in registry.list_adapters(session, user)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=VersionOut)
def register(body: RegisterIn, session: SessionDep, user: CurrentUser) -> VersionOut:
    """Register a run's adapter as the next version of the named adapter (made if new)."""
    request = registry.Registration(name=body.name, run_id=body.run_id, step=body.step, description=body.description)
    return VersionOut.model_validate(registry.register(session, user, request))


class ImportOut(VersionOut):
    """An imported version and what could not be checked about it."""

    warnings: list[str]


@router.post("/import", status_code=status.HTTP_201_CREATED, response_model=ImportOut)
def import_version(session: SessionDep, user: CurrentUser, settings: SettingsDep,
                   name: Annotated[str, Form(min_length=1, max_length=64, description="The adapter (made if new)")],
                   base_model: Annotated[str, Form(min_length=1, max_length=200)],
                   config: Annotated[UploadFile, File(description="adapter_config.json")],
                   weights: Annotated[UploadFile, File(description="adapter_model.safetensors (no pickle)")],
                   description: Annotated[str, Form(max_length=registry.MAX_DESCRIPTION)] = "") -> ImportOut:
    """Import a PEFT LoRA adapter trained elsewhere as the next version of `name` on a registered base: safetensors
    only, its config checked, the file whole, its shapes fitting the base; 422 naming what is wrong, nothing
    stored."""
    adapter_import.check_file_names([config.filename or "", weights.filename or ""])
    raw = config.file.read(adapter_import.MAX_CONFIG_BYTES + 1)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix="import-") as folder:
        path = Path(folder) / adapter_import.WEIGHTS
        with path.open("wb") as out:
            shutil.copyfileobj(weights.file, out, 1024 * 1024)
        version, warnings = registry.import_version(session, user, name, base_model, raw, path, description)
        return ImportOut(**VersionOut.model_validate(version).model_dump(), warnings=warnings)


@router.get("/{name}", response_model=AdapterOut)
def get_adapter(adapter: AdapterDep, session: SessionDep) -> AdapterOut:
    """One of your adapters, its versions with their lineage, and its aliases."""
    return _out(session, adapter)


@router.put("/{name}/aliases/{alias}", response_model=AdapterOut)
def set_alias(adapter: AdapterDep, alias: AliasName, body: AliasIn, session: SessionDep) -> AdapterOut:
    """Point an alias at a version: made if new, else moved (promote, roll back); audited with from and to."""
    registry.set_alias(session, adapter, alias, body.version)
    return _out(session, adapter, lineage=False)


@router.delete("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_alias(adapter: AdapterDep, alias: AliasName, session: SessionDep) -> Response:
    """Remove an alias (audited)."""
    registry.delete_alias(session, adapter, alias)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{name}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_version(adapter: AdapterDep, version: VersionNumber, session: SessionDep) -> Response:
    """Delete a version (409 while an alias points to it, naming the alias)."""
    registry.delete_version(session, adapter, version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class CompatibilityOut(BaseModel):
    """A version against its base as registered now."""

    compatible: bool
    problems: list[str] = Field(description="Why it cannot be applied (then /v1, the playground and evaluations "
                                "refuse it with the first)")
    warnings: list[str] = Field(description="What changed in the base since registration, or could not be checked")


@router.get("/{name}/versions/{version}/compatibility", response_model=CompatibilityOut)
def version_compatibility(adapter: AdapterDep, version: VersionNumber, session: SessionDep) -> CompatibilityOut:
    """Check a version against its base now: LoRA shapes against the base's config.json; the base's config,
    tokenizer and chat template against what was recorded when the version was registered."""
    checked = registry.compatibility(session, registry.version_of(session, adapter, version))
    return CompatibilityOut(compatible=checked.compatible, problems=checked.problems, warnings=checked.warnings)


class ReadinessOut(BaseModel):
    """Whether a server would load the version as it is, and how to serve it."""

    server: str
    ready: bool
    problems: list[str]
    notes: list[str]
    command: str = Field(description="The command that serves it (empty when it is not ready)")


@router.get("/{name}/versions/{version}/readiness", response_model=list[ReadinessOut])
def version_readiness(adapter: AdapterDep, version: VersionNumber, session: SessionDep) -> list[ReadinessOut]:
    """Serving readiness: vLLM's rules on the version's files (rank, DoRA, modules_to_save, bias, layers), and the
    exact `vllm serve` command."""
    found = registry.version_of(session, adapter, version)
    return [ReadinessOut(server=r.server, ready=r.ready, problems=r.problems, notes=r.notes, command=r.command)
            for r in registry.readiness(session, adapter, found)]


@router.get("/{name}/versions/{version}/download", response_class=StreamingResponse)
def download_version(adapter: AdapterDep, version: VersionNumber, session: SessionDep,
                     res: ResourcesDep) -> StreamingResponse:
    """A version's files as a zip, streamed, with a model card (README.md: lineage, evaluation scores, how to load
    and serve it) in place of any stored one."""
    found = registry.version_of(session, adapter, version)
    files = [(n, b) for n, b in session.execute(select(AdapterVersionFile.name, AdapterVersionFile.blob_id)
                                                .where(AdapterVersionFile.version_id == found.id)
                                                .order_by(AdapterVersionFile.name))]
    aliases = [alias for alias, number in registry.aliases(session, adapter).items() if number == version]
    card = model_card(adapter, found, aliases, registry.readiness(session, adapter, found))
    headers = {"Content-Disposition": f'attachment; filename="{adapter.name}-v{version}.zip"'}
    return StreamingResponse(adapter_zip_stream(res.session_factory, files, {"README.md": card.encode()}),
                             media_type="application/zip", headers=headers)
