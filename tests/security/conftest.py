"""Two ordinary users and real objects owned by the first: a dataset, its analysis, a finished run with metrics
and an adapter, and an API token, all made through the services as the studio makes them."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core import blobs
from app.core.db import session_scope
from app.core.models import Artifact, DatasetAnalysis, Evaluation, RunStatus, User
from app.core.resources import Resources
from app.core.services import api_tokens, models, registry, runs
from app.core.services import datasets as dataset_service
from app.core.services import exports as export_service
from tests.support.accounts import Account, create_account
from worker.planning.reports import Metric
from worker.planning.spec import RunSpec

# Enough of a decoder's config.json for the designer's estimate (no weights are read).
TINY_CONFIG = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "vocab_size": 1000}
ROWS = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(8)]


@dataclass(frozen=True)
class Owned:
    """Ids of the owner's objects by the path parameter that names them, and names only they may see."""

    ids: dict[str, int | str]
    dataset_name: str
    run_name: str
    model_name: str


@pytest.fixture(scope="session")
def owner(resources: Resources) -> Account:
    """An ordinary user who owns the objects below."""
    return create_account(resources)


@pytest.fixture(scope="session")
def stranger(resources: Resources) -> Account:
    """Another ordinary user, who must not see the owner's objects."""
    return create_account(resources)


@pytest.fixture(scope="session")
def owned(app, resources: Resources, owner: Account, tmp_path_factory: pytest.TempPathFactory) -> Owned:  # noqa: ANN001
    """The owner's dataset, analysis, finished run (metrics, adapter file) and a spare API token.

    (`app` is asked for because create_app sets up the job sender that create_run queues with.)"""
    folder = tmp_path_factory.mktemp("owned")
    marker = uuid.uuid4().hex[:8]
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text(json.dumps(TINY_CONFIG))
    (folder / "model" / "model.safetensors").write_bytes(b"")  # registration wants safetensors; never opened
    data = folder / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with session_scope(resources.session_factory) as session:
        user = session.get(User, owner.id)
        model = models.register_model(session, f"model-{marker}", str(folder / "model"))
        dataset = dataset_service.create_dataset(session, data, "chat.jsonl", f"secret-dataset-{marker}", user=user)
        analysis = DatasetAnalysis(dataset_id=dataset.id, base_model_id=model.id, max_seq_length=64,
                                   status="queued", result={})
        session.add(analysis)
        spec = RunSpec.model_validate({"name": f"secret-run-{marker}", "model": {"base_model": model.name},
                                       "data": {"dataset_id": dataset.id, "max_seq_length": 64}})
        run = runs.create_run(session, spec, None, user=user)
        # Claimed before the commit sends its queue message: a live studio's worker (tests/e2e) gets the message
        # too, and must find the run taken rather than train on these empty weights.
        assert runs.claim_run(session, run.id, "test-worker")
        token, _ = api_tokens.create_token(session, user, "spare")  # the revoke route's target
        evaluation = Evaluation(owner_id=user.id, model=model.name, base_name=model.name, dataset_id=dataset.id,
                                scorers=["exact"], params={"max_examples": 1, "max_new_tokens": 1, "seed": 0},
                                status="failed", summary={})  # never queued: no worker takes it
        session.add(evaluation)
        session.flush()
        # A shared model: only admins may delete it, others find none; likewise an account (user_id).
        ids = {"dataset_id": dataset.id, "analysis_id": analysis.id, "run_id": run.id, "token_id": token.id,
               "model_id": model.id, "user_id": owner.id, "evaluation_id": evaluation.id}
    _finish(resources, ids["run_id"], folder)
    ids |= _register(resources, owner, ids["run_id"], f"secret-adapter-{marker}")
    ids |= _export(resources, owner, str(ids["name"]), folder)
    return Owned(ids, f"secret-dataset-{marker}", f"secret-run-{marker}", f"model-{marker}")


def _finish(resources: Resources, run_id: int, folder: Path) -> None:
    """Take the claimed run through a worker's steps: two metric points, succeeded with adapter files."""
    (folder / "adapter_model.safetensors").write_bytes(b"not really weights")
    (folder / "adapter_config.json").write_text('{"r": 8}')
    with session_scope(resources.session_factory) as session:
        runs.record_metrics(session, run_id, [Metric(step=1, loss=2.0), Metric(step=2, loss=1.5)])
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            blob = blobs.put_file(session, folder / name, "application/octet-stream")
            session.add(Artifact(run_id=run_id, kind="adapter", name=name, blob_id=blob.id, size=blob.size))
        runs.finish_run(session, run_id, RunStatus.succeeded, {"steps": 2, "train_loss": 1.5})


def _register(resources: Resources, owner: Account, run_id: int, name: str) -> dict[str, int | str]:
    """The run's adapter as v1 of a registered adapter of the owner's, with an alias: the registry's path ids."""
    with session_scope(resources.session_factory) as session:
        user = session.get(User, owner.id)
        registry.register(session, user, registry.Registration(name=name, run_id=run_id))
        registry.set_alias(session, registry.get_adapter(session, user, name), "production", 1)
    return {"name": name, "alias": "production", "version": 1}


def _export(resources: Resources, owner: Account, name: str, folder: Path) -> dict[str, int | str]:
    """A succeeded merged export of v1 with one file: the export routes' path ids. Claimed before the commit sends
    its queue message, so a live studio's worker finds it taken."""
    with session_scope(resources.session_factory) as session:
        user = session.get(User, owner.id)
        adapter = registry.get_adapter(session, user, name)
        export = export_service.request_export(session, user, adapter, registry.version_of(session, adapter, 1),
                                               "merged")
        assert export_service.claim_export(session, export.id) == 1
        export_id = export.id
    out = folder / "export"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"merged weights")
    listed = [{"name": "model.safetensors", "size": 14, "sha256": hashlib.sha256(b"merged weights").hexdigest()}]
    with session_scope(resources.session_factory) as session:
        assert export_service.finish_export(session, export_id, out, listed, {"checks": {}})
    return {"export_id": export_id, "file_name": "model.safetensors"}
