"""Fixtures of the generation service's tests: the tiny model as a registered base, real LoRA adapters made with
PEFT and stored as runs' artifacts (tests/support/adapters.py), an engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.core.generation.protocol import AdapterRef, BaseRef
from tests.support.adapters import make_adapter, store_adapter


@pytest.fixture(scope="session")
def tiny_base(tiny_model_dir: Path) -> BaseRef:
    return BaseRef(name="tiny", source="local", ref=str(tiny_model_dir))


@pytest.fixture(scope="session")
def adapter_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different adapters' folders."""
    root = tmp_path_factory.mktemp("adapters")
    return [make_adapter(tiny_model_dir, root / f"a{seed}", seed) for seed in (1, 2)]


@pytest.fixture(scope="session")
def adapters(resources, adapter_dirs: list[Path]) -> list[AdapterRef]:  # noqa: ANN001
    """The two adapters stored as two runs' artifacts."""
    return [store_adapter(resources, folder) for folder in adapter_dirs]


@pytest.fixture(scope="session")
def engine(resources, settings):  # noqa: ANN001, ANN201
    """An engine on the CPU in float32 (so its outputs can be compared with transformers' and PEFT's own
    generate exactly; bfloat16 rounds PEFT's mixed-batch sum in another order than its plain forward)."""
    from worker.generation.adapters import AdapterCache
    from worker.generation.engine import Engine

    cache = AdapterCache(resources.session_factory, settings.data_dir / "generation-cache")
    return Engine("cpu", cache, max_adapters=8, dtype=torch.float32)
