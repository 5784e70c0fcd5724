"""Fixtures for the web's generation routes (/v1, the playground) against the stand-in service: a Redis database of
their own (GEN_URL, away from any real generation service), the session's generation namespace, short timeouts;
and runs with adapter files as a worker leaves them. Registered in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import redis

from app.core import blobs
from app.core.config import Settings
from app.core.generation import protocol
from app.core.models import Artifact, Run, RunStatus
from app.core.resources import Resources
from tests.conftest import REDIS_URL
from tests.support.generation_standin import GenerationStandIn

GEN_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"


def generation_keys(settings: Settings) -> protocol.Keys:
    """The test session's generation keys (its own namespace, as for its Celery queue)."""
    return protocol.Keys(settings.generation_namespace)


def clear_generation_keys(settings: Settings) -> None:
    """No request or service presence left over on GEN_URL from an earlier test."""
    r = redis.Redis.from_url(GEN_URL)
    keys = generation_keys(settings)
    r.delete(keys.requests, *r.scan_iter(match=keys.presence_pattern))


@pytest.fixture
def gen_settings(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The app's settings on the generation Redis database, with short timeouts and no request left over."""
    clear_generation_keys(resources.settings)
    changed = resources.settings.model_copy(update={"redis_url": GEN_URL, "generation_start_timeout_s": 3.0,
                                                    "generation_idle_timeout_s": 3.0})
    monkeypatch.setattr(resources, "settings", changed)
    return changed


@pytest.fixture
def standin(gen_settings: Settings) -> Iterator[GenerationStandIn]:
    """The stand-in service, serving while the test runs."""
    with GenerationStandIn(GEN_URL, keys=generation_keys(gen_settings)) as service:
        yield service
    assert not service.refused, service.refused  # every request the web sent was valid


LORA_CONFIG = b'{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "bias": "none"}'


def lora_weights(fill: int) -> bytes:
    """A small but well-formed LoRA safetensors file (one q_proj pair, rank 2), its values set by fill so that each
    run's files hash differently; the stand-in service never loads it."""
    from safetensors.numpy import save

    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    return save({f"{prefix}.lora_A.weight": np.full((2, 8), fill, np.float32),
                 f"{prefix}.lora_B.weight": np.zeros((8, 2), np.float32)})


def adapter_run(session, base_model_id: int, dataset_id: int, owner_id: int | None, name: str = "r",  # noqa: ANN001
                status: RunStatus = RunStatus.succeeded, checkpoint: bool = False) -> int:
    """A run as a worker leaves it: with adapter files (and, with checkpoint, a checkpoint's file, which is not
    part of the adapter, and the adapter kept of that step 2); committed."""
    run = Run(name=name, status=status, method="lora", spec={}, dataset_id=dataset_id, base_model_id=base_model_id,
              owner_id=owner_id)
    session.add(run)
    session.flush()
    files = [("adapter", "adapter_model.safetensors", lora_weights(run.id)),
             ("adapter", "adapter_config.json", LORA_CONFIG)]
    if checkpoint:
        files += [("checkpoint", "step-000002/optimizer.safetensors", b"ckpt"),
                  ("step_adapter", "step-000002/adapter_model.safetensors", lora_weights(-run.id)),
                  ("step_adapter", "step-000002/adapter_config.json", LORA_CONFIG)]
    for kind, file_name, payload in files:
        blob = blobs.put_stream(session, [payload], "application/octet-stream")
        session.add(Artifact(run_id=run.id, kind=kind, name=file_name, blob_id=blob.id, size=len(payload)))
    session.commit()
    return run.id
