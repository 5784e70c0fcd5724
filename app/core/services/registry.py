"""The adapter registry's use cases: register a run's adapter (or one of its kept steps) as a new immutable version
of a named adapter, with its lineage; point aliases (production, staging) at versions and move them, audited;
delete a version no alias points to; resolve `name:vN` / `name:alias` for generation and evaluation.

Names belong to their owner: `identity:production` is the caller's adapter named identity (an admin's too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import adapter_import, base_fingerprint, blobs, serving_readiness
from app.core.access import can_see, owner_id, visible
from app.core.db import utcnow
from app.core.errors import StudioError, not_found
from app.core.generation.adapter_hash import adapter_files, adapter_hash
from app.core.models import (
    AdapterAlias,
    AdapterVersion,
    AdapterVersionFile,
    BaseModelEntry,
    Blob,
    Dataset,
    Evaluation,
    RegisteredAdapter,
    Run,
    RunStatus,
    User,
)
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import usage
from app.core.services import audit
from app.core.serving_readiness import Readiness

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,31}")
VERSION = re.compile(r"v([0-9]{1,9})")
# `name:vN` or `name:alias`, as /v1, the playground and evaluations take them.
REFERENCE = re.compile(rf"({NAME.pattern}):(v[0-9]{{1,9}}|{ALIAS.pattern})")
MAX_DESCRIPTION = 2000
MAX_EVALUATIONS_IN_LINEAGE = 20


@dataclass(frozen=True)
class Registration:
    """What a person asks to register: a run's final adapter (step None) or its adapter of one kept step."""

    name: str
    run_id: int
    step: int | None = None
    description: str = ""


def check_name(name: str) -> str:
    """An adapter name: letters, digits, _ . -, at most 64, not `run-<n>` (those are runs' own model ids)."""
    if not NAME.fullmatch(name) or re.fullmatch(r"run-[0-9]+", name):
        raise StudioError("invalid", "invalid_adapter_name", "An adapter name is 1-64 letters, digits, '_', '.' or "
                          "'-', starting with a letter or digit, and not run-<number> (a run's own model id).",
                          field="name")
    return name


def check_alias(alias: str) -> str:
    """An alias: lowercase letters, digits, _ and -, starting with a letter, not v<number> (a version's name)."""
    if not ALIAS.fullmatch(alias) or VERSION.fullmatch(alias):
        raise StudioError("invalid", "invalid_alias", "An alias is 1-32 lowercase letters, digits, '_' or '-', "
                          "starting with a letter, and not v<number> (that names a version).", field="alias")
    return alias


def register(session: Session, user: User | None, request: Registration) -> AdapterVersion:
    """A new version of the named adapter (made if it is new) holding the run's adapter files, with its lineage."""
    name = check_name(request.name.strip())
    description = request.description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise StudioError("invalid", "description_too_long", f"The description is {len(description)} characters; "
                          f"at most {MAX_DESCRIPTION}.", field="description")
    run = session.get(Run, request.run_id)
    if run is None or not can_see(user, run.owner_id):
        raise not_found("run", request.run_id)
    files = _source_files(session, run, request.step)
    adapter = _own_adapter(session, user, name) or _new_adapter(session, user, name, description)
    number = (session.scalar(select(func.max(AdapterVersion.version)).where(AdapterVersion.adapter_id == adapter.id))
              or 0) + 1
    base = session.get(BaseModelEntry, run.base_model_id)
    version = AdapterVersion(adapter_id=adapter.id, version=number, source="run" if request.step is None else "step",
                             run_id=run.id, step=request.step, base_model_id=run.base_model_id,
                             base_name=base.name if base else "", created_by=user.username if user else "",
                             sha256=adapter_hash((f.name, f.blob_sha256) for f in files),
                             lineage=_lineage(session, run, request.step, base, files))
    session.add(version)
    session.flush()
    session.add_all(AdapterVersionFile(version_id=version.id, name=f.name, blob_id=f.blob_id, size=f.size)
                    for f in files)
    audit.record(session, "adapter.version.create", f"adapter {adapter.id} '{name}' v{number}",
                 owner_id=adapter.owner_id, run_id=run.id, step=request.step, sha256=version.sha256)
    session.flush()
    return version


def import_version(session: Session, user: User | None, name: str, base_model: str, config_raw: bytes,
                   weights: Path, description: str = "") -> tuple[AdapterVersion, list[str]]:
    """A PEFT LoRA adapter from elsewhere as the next version of the named adapter, on a registered base: checked
    (adapter_import: safetensors only, config, whole file, shapes against the base's config.json) before anything
    is stored. Returns the version and the warnings (what could not be checked)."""
    name = check_name(name.strip())
    base = session.scalars(select(BaseModelEntry).where(BaseModelEntry.name == base_model.strip())).first()
    if base is None:
        raise StudioError("not_found", "model_not_found", f"No base model is registered as '{base_model[:200]}' "
                          "(GET /api/models lists them; register it first).", field="base_model")
    config = adapter_import.check_config(config_raw)
    tensors = adapter_import.read_header(weights)
    warnings = adapter_import.check_shapes(tensors, config, adapter_import.base_config(base.source, base.ref))
    adapter = _own_adapter(session, user, name) or _new_adapter(session, user, name, description.strip())
    number = (session.scalar(select(func.max(AdapterVersion.version)).where(AdapterVersion.adapter_id == adapter.id))
              or 0) + 1
    stored = [(adapter_import.CONFIG, blobs.put_stream(session, [config_raw], "application/json")),
              (adapter_import.WEIGHTS, blobs.put_file(session, weights, "application/octet-stream"))]
    files = [{"name": n, "size": b.size, "sha256": b.sha256} for n, b in stored]
    version = AdapterVersion(
        adapter_id=adapter.id, version=number, source="import", base_model_id=base.id, base_name=base.name,
        created_by=user.username if user else "", sha256=adapter_hash((n, b.sha256) for n, b in stored),
        lineage={"import": {"r": config["r"], "lora_alpha": config.get("lora_alpha"),
                            "target_modules": config.get("target_modules"),
                            "base_model_name_or_path": config.get("base_model_name_or_path"),
                            "tensors": len(tensors), "warnings": warnings},
                 "base_model": {"name": base.name, "source": base.source, "ref": base.ref,
                                "fingerprint": base_fingerprint.fingerprint(base.source, base.ref)},
                 "files": files, "registered_at": utcnow().isoformat()})
    session.add(version)
    session.flush()
    session.add_all(AdapterVersionFile(version_id=version.id, name=n, blob_id=b.id, size=b.size) for n, b in stored)
    audit.record(session, "adapter.version.import", f"adapter {adapter.id} '{name}' v{number}",
                 owner_id=adapter.owner_id, base_model=base.name, sha256=version.sha256)
    session.flush()
    return version, warnings


def _source_files(session: Session, run: Run, step: int | None) -> list:
    """The files a version takes: a succeeded run's final adapter (all its files: PEFT's, tokenizer, card, spec),
    or the PEFT files kept of one step."""
    if step is None and run.status != RunStatus.succeeded:
        raise StudioError("conflict", "run_not_succeeded", f"Run {run.id} is {run.status}: only a succeeded run's "
                          "final adapter can be registered (or the adapter of one of its kept steps: give step).",
                          field="run_id")
    files = adapter_files(session, run.id, step)
    if not files:
        kept = artifacts_repo.stored_steps(session, run.id)
        which = f"its kept steps are {', '.join(map(str, kept[-20:]))}" if kept else "it kept none"
        raise StudioError("not_found", "step_not_kept", f"Run {run.id} has no adapter of step {step}: {which}.",
                          field="step")
    missing = set(artifacts_repo.PEFT_FILES) - {f.name for f in files}
    if missing:
        raise StudioError("conflict", "adapter_incomplete", f"The adapter of run {run.id} lacks "
                          f"{', '.join(sorted(missing))}.", field="run_id")
    return files


def _lineage(session: Session, run: Run, step: int | None, base: BaseModelEntry | None, files: list) -> dict:
    """Where the version came from, recorded once: base, data, the exact spec, libraries, device, results, files."""
    dataset = session.get(Dataset, run.dataset_id)
    spec = run.spec if isinstance(run.spec, dict) else {}
    evaluations = session.scalars(
        select(Evaluation).where(Evaluation.run_id == run.id, Evaluation.status == "succeeded")
        .order_by(Evaluation.id.desc()).limit(MAX_EVALUATIONS_IN_LINEAGE)).all()
    return {
        "run": {"id": run.id, "name": run.name, "method": run.method, "step": step,
                "steps": run.current_step, "final": run.final or {}},
        "base_model": {"name": base.name, "source": base.source, "ref": base.ref, "gguf_file": base.gguf_file,
                       "revision": (spec.get("model") or {}).get("revision"),
                       "fingerprint": base_fingerprint.fingerprint(base.source, base.ref)} if base else None,
        "dataset": {"id": dataset.id, "name": dataset.name, "sha256": dataset.sha256,
                    "canonical_sha256": _canonical_sha(session, dataset)} if dataset else None,
        "spec": spec,
        "library_versions": run.versions or {},
        "device": run.device,
        "evaluations": [{"id": e.id, "model": e.model, "dataset_id": e.dataset_id, "scorers": e.scorers,
                         "summary": {part: _scores(e.summary.get(part)) for part in ("main", "general")
                                     if e.summary.get(part)}} for e in evaluations],
        "files": [{"name": f.name, "size": f.size, "sha256": f.blob_sha256} for f in files],
        "registered_at": utcnow().isoformat(),
    }


def _canonical_sha(session: Session, dataset: Dataset) -> str | None:
    blob = session.get(Blob, dataset.canonical_blob_id) if dataset.canonical_blob_id else None
    return blob.sha256 if blob else None


def _scores(part: dict[str, Any] | None) -> dict[str, Any]:
    """An evaluation part's headline figures (n, each scorer's base and adapter means), not its every example."""
    if not part:
        return {}
    scorers = {name: {side: (figures.get(side) or {}).get("mean") for side in ("base", "adapter")}
               for name, figures in (part.get("scorers") or {}).items()}
    return {"n": part.get("n"), "no_measurable_effect": part.get("no_measurable_effect"), "scorers": scorers}


def _new_adapter(session: Session, user: User | None, name: str, description: str) -> RegisteredAdapter:
    adapter = RegisteredAdapter(owner_id=owner_id(user), name=name, description=description)
    session.add(adapter)
    session.flush()
    return adapter


def _own_adapter(session: Session, user: User | None, name: str) -> RegisteredAdapter | None:
    query = select(RegisteredAdapter).where(RegisteredAdapter.name == name)
    owner = owner_id(user)
    query = query.where(RegisteredAdapter.owner_id.is_(None) if owner is None else RegisteredAdapter.owner_id == owner)
    return session.scalars(query).first()


def get_adapter(session: Session, user: User | None, name: str) -> RegisteredAdapter:
    """The caller's adapter of that name (an admin's: their own, else the oldest of that name), or 404 (another
    user's reads as missing)."""
    adapter = _own_adapter(session, user, name) if NAME.fullmatch(name) else None
    if adapter is None and NAME.fullmatch(name) and user is not None and user.is_admin:
        adapter = session.scalars(select(RegisteredAdapter).where(RegisteredAdapter.name == name)
                                  .order_by(RegisteredAdapter.id)).first()
    if adapter is None:
        raise StudioError("not_found", "adapter_not_found", f"You have no adapter named '{name[:64]}' (GET "
                          "/api/adapters lists yours).", field="name")
    return adapter


def list_adapters(session: Session, user: User) -> list[RegisteredAdapter]:
    """The adapters user may see (an admin's: every one), by name."""
    query = select(RegisteredAdapter).order_by(RegisteredAdapter.name, RegisteredAdapter.id)
    return list(session.scalars(visible(query, RegisteredAdapter, user)))


def versions(session: Session, adapter: RegisteredAdapter) -> list[AdapterVersion]:
    """An adapter's versions, newest first."""
    query = select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id)
    return list(session.scalars(query.order_by(AdapterVersion.version.desc())))


def aliases(session: Session, adapter: RegisteredAdapter) -> dict[str, int]:
    """{alias: version number} of an adapter."""
    query = (select(AdapterAlias.name, AdapterVersion.version).join(AdapterVersion,
                                                                     AdapterVersion.id == AdapterAlias.version_id)
             .where(AdapterAlias.adapter_id == adapter.id).order_by(AdapterAlias.name))
    return dict(session.execute(query).all())


def version_of(session: Session, adapter: RegisteredAdapter, number: int) -> AdapterVersion:
    """Version `number` of an adapter, or 404 naming the versions it has."""
    found = session.scalars(select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id,
                                                         AdapterVersion.version == number)).first()
    if found is None:
        have = [f"v{v.version}" for v in versions(session, adapter)][:20]
        raise StudioError("not_found", "version_not_found", f"Adapter '{adapter.name}' has no v{number}"
                          f" (it has {', '.join(have) or 'none'}).", field="version")
    return found


def set_alias(session: Session, adapter: RegisteredAdapter, alias: str, number: int) -> AdapterAlias:
    """Point alias at version `number` (made if new, moved if not: promote, or roll back); audited from → to."""
    check_alias(alias)
    target = version_of(session, adapter, number)
    found = session.scalars(select(AdapterAlias).where(AdapterAlias.adapter_id == adapter.id,
                                                       AdapterAlias.name == alias)).first()
    before = session.get(AdapterVersion, found.version_id).version if found else None
    if found is None:
        found = AdapterAlias(adapter_id=adapter.id, name=alias, version_id=target.id)
        session.add(found)
    else:
        found.version_id, found.updated_at = target.id, utcnow()
    session.flush()
    audit.record(session, "adapter.alias.move", f"adapter {adapter.id} '{adapter.name}' {alias}",
                 owner_id=adapter.owner_id, alias=alias, **{"from": before, "to": number})
    return found


def delete_alias(session: Session, adapter: RegisteredAdapter, alias: str) -> None:
    """Remove an alias (audited); 404 when the adapter has none of that name."""
    found = session.scalars(select(AdapterAlias).where(AdapterAlias.adapter_id == adapter.id,
                                                       AdapterAlias.name == alias)).first()
    if found is None:
        raise StudioError("not_found", "alias_not_found", f"Adapter '{adapter.name}' has no alias '{alias[:32]}'.",
                          field="alias")
    before = session.get(AdapterVersion, found.version_id).version
    session.delete(found)
    session.flush()
    audit.record(session, "adapter.alias.delete", f"adapter {adapter.id} '{adapter.name}' {alias}",
                 owner_id=adapter.owner_id, alias=alias, **{"from": before})


def delete_version(session: Session, adapter: RegisteredAdapter, number: int) -> None:
    """Delete a version with its exports (their file references go; blobs nothing else uses are collected); refused
    while an alias points to it, naming the alias. A running export of it then finds its row gone and stores
    nothing."""
    version = version_of(session, adapter, number)
    pointing = session.scalars(select(AdapterAlias.name).where(AdapterAlias.version_id == version.id)).all()
    if pointing:
        raise StudioError("conflict", "version_has_alias", f"{adapter.name}:v{number} is what "
                          f"{', '.join(pointing)} point{'s' if len(pointing) == 1 else ''} to: move or delete "
                          f"{'that alias' if len(pointing) == 1 else 'those aliases'} first.", field="version")
    blob_ids = list(session.scalars(select(AdapterVersionFile.blob_id).where(
        AdapterVersionFile.version_id == version.id))) + usage.export_blob_ids(session, version.id)
    session.delete(version)  # its files and its exports (with theirs) go with it (ON DELETE CASCADE)
    session.flush()
    audit.record(session, "adapter.version.delete", f"adapter {adapter.id} '{adapter.name}' v{number}",
                 owner_id=adapter.owner_id, sha256=version.sha256)
    blobs.collect_garbage(session, blob_ids)


@dataclass(frozen=True)
class Compatibility:
    """Whether a version can be applied to its base as the base is registered now: problems refuse it (shapes
    that do not fit, a base gone), warnings name what changed or could not be checked."""

    problems: list[str]
    warnings: list[str]

    @property
    def compatible(self) -> bool:
        return not self.problems


class _Incomplete(Exception):
    """A version lacks adapter_config.json or adapter_model.safetensors."""


def _contents(session: Session, version: AdapterVersion) -> tuple[dict[str, Any], list[adapter_import.Tensor]]:
    """A version's LoRA config and the tensors its safetensors header declares, read from the blob store (the header
    only, never the tensors); _Incomplete without the two files, a StudioError when they do not read."""
    files = {f.name: f for f in session.scalars(select(AdapterVersionFile).where(
        AdapterVersionFile.version_id == version.id))}
    config_file, weights = files.get(adapter_import.CONFIG), files.get(adapter_import.WEIGHTS)
    if config_file is None or weights is None:
        raise _Incomplete
    config = adapter_import.check_config(b"".join(blobs.iter_blob(session, config_file.blob_id)))
    return config, adapter_import.header_of(partial(blobs.read_range, session, weights.blob_id), weights.size)


def compatibility(session: Session, version: AdapterVersion) -> Compatibility:
    """The version's files against its base now: the LoRA shapes against the base's config.json, and the base's
    config, tokenizer and chat template against what was recorded at registration."""
    base = session.get(BaseModelEntry, version.base_model_id) if version.base_model_id else None
    if base is None:
        return Compatibility([f"its base model {version.base_name} is no longer registered"], [])
    problems, warnings = [], []
    try:
        config, tensors = _contents(session, version)
        warnings += adapter_import.check_shapes(tensors, config, adapter_import.base_config(base.source, base.ref))
    except _Incomplete:
        return Compatibility(["its files are incomplete (adapter_config.json and adapter_model.safetensors)"], [])
    except StudioError as exc:
        problems.append(exc.message)
    recorded = ((version.lineage or {}).get("base_model") or {}).get("fingerprint")
    warnings += base_fingerprint.drift(recorded, base_fingerprint.fingerprint(base.source, base.ref))
    return Compatibility(problems, warnings)


def readiness(session: Session, adapter: RegisteredAdapter, version: AdapterVersion) -> list[Readiness]:
    """Whether each server the studio knows would load the version as it is (serving_readiness), with the command."""
    base = session.get(BaseModelEntry, version.base_model_id) if version.base_model_id else None
    if base is None:
        return [Readiness("vllm", problems=["Cannot be checked: its base is no longer registered."])]
    try:
        config, tensors = _contents(session, version)
    except _Incomplete:
        return [Readiness("vllm", problems=["Cannot be checked: its files are incomplete."])]
    except StudioError as exc:
        return [Readiness("vllm", problems=[exc.message])]
    served = f"{adapter.name}-v{version.version}"
    return [serving_readiness.vllm(config, tensors, base.ref, served),
            serving_readiness.sglang(config, tensors, base.ref, served),
            serving_readiness.tgi(config, tensors, base.ref, served),
            serving_readiness.llama_cpp(config, tensors, base.name, served)]


def resolve(session: Session, user: User | None, reference: str) -> AdapterVersion | None:
    """The version `name:vN` or `name:alias` names for user; None when reference is not of that form or user has
    no adapter of that name (then it may be a base model's name); 404 for a missing version or alias."""
    match = REFERENCE.fullmatch(reference)
    if match is None:
        return None
    adapter = _own_adapter(session, user, match.group(1))
    if adapter is None:
        return None
    label = match.group(2)
    if version := VERSION.fullmatch(label):
        return version_of(session, adapter, int(version.group(1)))
    target = session.scalar(select(AdapterAlias.version_id).where(AdapterAlias.adapter_id == adapter.id,
                                                                  AdapterAlias.name == label))
    if target is None:
        have = ", ".join(aliases(session, adapter)) or "none"
        raise StudioError("not_found", "alias_not_found", f"Adapter '{adapter.name}' has no alias '{label}' "
                          f"(its aliases: {have}).", field="model")
    return session.get(AdapterVersion, target)


def references(session: Session, user: User) -> list[tuple[str, AdapterVersion]]:
    """Every `name:vN` and `name:alias` user may generate with (their own adapters), with the version each names."""
    owner = owner_id(user)
    mine = RegisteredAdapter.owner_id.is_(None) if owner is None else RegisteredAdapter.owner_id == owner
    rows = session.execute(select(RegisteredAdapter.name, AdapterVersion)
                           .join(AdapterVersion, AdapterVersion.adapter_id == RegisteredAdapter.id)
                           .where(mine).order_by(RegisteredAdapter.name, AdapterVersion.version.desc())).all()
    found = [(f"{name}:v{version.version}", version) for name, version in rows]
    by_id = {version.id: version for _, version in rows}
    named = session.execute(select(RegisteredAdapter.name, AdapterAlias.name, AdapterAlias.version_id)
                            .join(AdapterAlias, AdapterAlias.adapter_id == RegisteredAdapter.id).where(mine)
                            .order_by(RegisteredAdapter.name, AdapterAlias.name)).all()
    return [(f"{name}:{alias}", by_id[version_id]) for name, alias, version_id in named] + found
