"""Which models a user may generate with: every registered base model by its name, the user's registry adapters as
`name:vN` and `name:alias`, the final adapters of the user's succeeded runs as `run-<id>`, and the adapter of any
stored checkpoint of the user's runs (running ones too) as `run-<id>@step-<k>` (an admin's: every run's). Someone
else's run or adapter reads as missing, as everywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.core.access import can_see, visible
from app.core.db import as_utc
from app.core.errors import StudioError
from app.core.generation.adapter_hash import ADAPTER, adapter_sha256
from app.core.generation.protocol import AdapterRef, BaseRef, ReplyStart
from app.core.models import AdapterVersion, Artifact, BaseModelEntry, Run, RunStatus, User
from app.core.repositories import artifacts as artifacts_repo
from app.core.repositories import catalog as catalog_repo
from app.core.repositories import runs as runs_repo
from app.core.services import registry

# `run-<id>` always names a run's adapter, even if someone registered a base model by that name: a base named so
# must not stand in for another user's adapter.
ADAPTER_ID = re.compile(r"run-([0-9]{1,10})(?:@step-([0-9]{1,10}))?")
MAX_ROW_ID = 2**31 - 1
MAX_ADAPTERS_LISTED = 1000
STUDIO = "lorastudio"


@dataclass(frozen=True)
class ModelCard:
    """One entry of the model list."""

    id: str
    created: int  # Unix seconds
    owned_by: str
    adapter: bool = False  # an adapter on a base (run-<id>, run-<id>@step-<k>, name:vN, name:alias), not a base


@dataclass(frozen=True)
class Resolved:
    """What a model id stands for: the base to load and the adapter to apply on it (None: the base alone)."""

    model_id: str
    base: BaseRef
    adapter: AdapterRef | None

    def applied_by(self, start: ReplyStart) -> bool:
        """Whether the service's `start` names the adapter files asked for (None for the base): the proof that
        what answers is this model, checked before anything is shown."""
        return start.adapter_sha256 == (self.adapter.sha256 if self.adapter else None)


def adapter_model_id(run_id: int, step: int | None = None) -> str:
    """The model id under which a run's final adapter (or its adapter of one step) is served."""
    return f"run-{run_id}" if step is None else f"run-{run_id}@step-{step}"


def parse_adapter_id(model_id: str) -> tuple[int, int | None] | None:
    """(run id, step or None) of an adapter's model id; None for any other name."""
    match = ADAPTER_ID.fullmatch(model_id)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def list_models(session: Session, user: User) -> list[ModelCard]:
    """The registered bases by name, user's registry adapters (name:alias, then name:vN), their runs' final adapters
    (the newest run first), then the adapters of their runs' kept steps (the newest run first, steps in order)."""
    bases = [ModelCard(m.name, _seconds(m.created_at), STUDIO) for m in catalog_repo.list_models(session)]
    adapters = [ModelCard(adapter_model_id(run.id), _seconds(run.finished_at or run.created_at), owner or STUDIO,
                          True) for run, owner in _runs_with_adapters(session, user)]
    steps = [ModelCard(adapter_model_id(run_id, step), _seconds(created), owner or STUDIO, True)
             for run_id, step, created, owner in _step_adapters(session, user)]
    registered = [ModelCard(reference, _seconds(version.created_at), user.username, True)
                  for reference, version in registry.references(session, user)]
    return bases + registered + adapters + steps


def resolve(session: Session, model_id: str, user: User) -> Resolved:
    """The base (and adapter) a model id names for user, or a model_not_found error."""
    adapter = parse_adapter_id(model_id)
    if adapter is not None:
        return _resolve_adapter(session, model_id, *adapter, user)
    version = registry.resolve(session, user, model_id)  # name:vN or name:alias of one of user's adapters
    if version is not None:
        return _resolve_version(session, model_id, version)
    entry = session.scalars(select(BaseModelEntry).where(BaseModelEntry.name == model_id)).first()
    if entry is None:
        raise model_not_found(model_id)
    return Resolved(model_id, base_ref(entry), None)  # any signed-in user may use a registered base


def _resolve_adapter(session: Session, model_id: str, run_id: int, step: int | None, user: User) -> Resolved:
    run = runs_repo.get(session, run_id) if run_id <= MAX_ROW_ID else None
    if run is None or not can_see(user, run.owner_id):
        raise model_not_found(model_id)
    if step is not None:
        sha256 = adapter_sha256(session, run.id, step)
        if sha256 is None:
            kept = artifacts_repo.stored_steps(session, run.id)
            which = (f"its stored steps are {', '.join(map(str, kept[-20:]))}" if kept else
                     "it has stored none yet (a run stores one at each checkpoint: training.save_steps)")
            raise model_not_found(model_id, f"Run {run.id} has no adapter of step {step}: {which}.")
    else:
        sha256 = adapter_sha256(session, run.id) if run.status == RunStatus.succeeded else None
        if sha256 is None:
            raise model_not_found(model_id, f"Run {run.id} has no final adapter to generate with (it is "
                                  f"{run.status}); only succeeded runs' final adapters are served, and the adapter "
                                  f"of any stored step as run-{run.id}@step-<k>.")
    entry = session.get(BaseModelEntry, run.base_model_id)
    if entry is None:
        raise model_not_found(model_id)
    return Resolved(model_id, base_ref(entry), AdapterRef(run_id=run.id, step=step, sha256=sha256))


def _resolve_version(session: Session, model_id: str, version: AdapterVersion) -> Resolved:
    entry = session.get(BaseModelEntry, version.base_model_id) if version.base_model_id else None
    if entry is None:
        raise model_not_found(model_id, f"The base model {version.base_name} of '{model_id}' is no longer "
                              "registered.")
    checked = registry.compatibility(session, version)  # before anything is applied: refused with the reason
    if not checked.compatible:
        raise StudioError("conflict", "adapter_incompatible", f"'{model_id}' cannot be applied to "
                          f"{version.base_name}: {checked.problems[0]}", field="model")
    return Resolved(model_id, base_ref(entry), AdapterRef(run_id=version.run_id or 0, step=version.step,
                                                          version_id=version.id, sha256=version.sha256))


def base_ref(entry: BaseModelEntry) -> BaseRef:
    """A registered base model as the generation service loads it."""
    return BaseRef(name=entry.name, source=entry.source, ref=entry.ref,  # type: ignore[arg-type]
                   gguf_file=entry.gguf_file, trust_remote_code=entry.trust_remote_code)


def model_not_found(model_id: str, message: str | None = None) -> StudioError:
    """The one answer for a model that does not exist and for one the user may not see."""
    return StudioError("not_found", "model_not_found", message or f"The model '{model_id[:200]}' does not exist or "
                       "you do not have access to it (GET /v1/models lists yours).", field="model")


def _runs_with_adapters(session: Session, user: User) -> Sequence[tuple[Run, str | None]]:
    """Succeeded runs user may see that stored a final adapter, with their owner's name; newest first."""
    has_adapter = exists().where(Artifact.run_id == Run.id, Artifact.kind == ADAPTER)
    query = (select(Run, User.username).outerjoin(User, User.id == Run.owner_id)
             .where(Run.status == RunStatus.succeeded, has_adapter).order_by(Run.id.desc()).limit(MAX_ADAPTERS_LISTED))
    return [(run, owner) for run, owner in session.execute(visible(query, Run, user))]


def _step_adapters(session: Session, user: User) -> list[tuple[int, int, datetime, str | None]]:
    """(run id, step, run created at, owner name) of the step adapters of runs user may see; the newest run
    first."""
    query = (select(Artifact.run_id, Artifact.name, Run.created_at, User.username)
             .join(Run, Run.id == Artifact.run_id).outerjoin(User, User.id == Run.owner_id)
             .where(Artifact.kind == artifacts_repo.STEP_ADAPTER,
                    Artifact.name.endswith(artifacts_repo.PEFT_FILES[1]))
             .order_by(Artifact.run_id.desc(), Artifact.name).limit(MAX_ADAPTERS_LISTED))
    return [(run_id, artifacts_repo.checkpoint_step(name), created, owner)
            for run_id, name, created, owner in session.execute(visible(query, Run, user))]


def _seconds(moment: datetime | None) -> int:
    return int(as_utc(moment).timestamp()) if moment is not None else 0
