"""Real LoRA adapters for tests: made with PEFT on the tiny model (random B matrices, so they change outputs) and
stored as a succeeded run's `adapter` artifacts (committed: services read them on connections of their own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from app.core import blobs
from app.core.db import session_scope
from app.core.generation.adapter_hash import adapter_sha256
from app.core.generation.protocol import AdapterRef
from app.core.models import Artifact, RunStatus
from app.core.repositories import artifacts as artifacts_repo
from tests.support.rows import insert_run


def make_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on the tiny model whose B matrices are random (fresh ones are zero and change nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.5
    peft_model.save_pretrained(out)
    (out / "README.md").write_text(f"adapter {seed}\n")
    return out


def store_adapter(resources, folder: Path, **run_fields: Any) -> AdapterRef:  # noqa: ANN001
    """A run (run_fields over insert_run's defaults, e.g. base_model_id, owner_id) with the folder's files as its
    `adapter` artifacts (committed); its AdapterRef."""
    with session_scope(resources.session_factory) as session:
        # Succeeded (finished): no reaper in another test takes it.
        run_id = insert_run(session, **{"status": RunStatus.succeeded, **run_fields})
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            blob = blobs.put_file(session, path, "application/octet-stream")
            session.add(Artifact(run_id=run_id, kind="adapter", name=path.relative_to(folder).as_posix(),
                                 blob_id=blob.id, size=blob.size))
        session.flush()
        sha = adapter_sha256(session, run_id)
    return AdapterRef(run_id=run_id, sha256=sha)


def store_step_adapter(resources, run_id: int, step: int, folder: Path) -> AdapterRef:  # noqa: ANN001
    """The folder's PEFT files kept as the run's adapter of one step (as a stored checkpoint leaves them)."""
    with session_scope(resources.session_factory) as session:
        for name in artifacts_repo.PEFT_FILES:
            blob = blobs.put_file(session, folder / name, "application/octet-stream")
            session.add(Artifact(run_id=run_id, kind=artifacts_repo.STEP_ADAPTER, blob_id=blob.id, size=blob.size,
                                 name=artifacts_repo.checkpoint_name(step, name)))
        session.flush()
        sha = adapter_sha256(session, run_id, step)
    return AdapterRef(run_id=run_id, step=step, sha256=sha)
