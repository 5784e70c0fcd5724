"""Fixtures for trainer tests: one tiny model per session, a small chat dataset, and a spec builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_model import build_tiny_model, tiny_chat_dataset
from worker.planning.spec import RunSpec


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a fast ChatML tokenizer, built once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 short, repetitive chat examples (some multi-turn)."""
    return tiny_chat_dataset(tmp_path_factory.mktemp("data") / "chat.jsonl", 40)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


@pytest.fixture
def make_spec(tiny_model: Path, chat_data: Path) -> Callable[..., RunSpec]:
    """A fast spec on the tiny model; keyword sections (training={...}) override the defaults."""
    return spec_builder(tiny_model, chat_data)


def spec_builder(tiny_model: Path, chat_data: Path) -> Callable[..., RunSpec]:
    """make_spec's builder, for fixtures of a wider scope."""

    def build(**overrides: Any) -> RunSpec:
        base = {
            "model": {"base_model": str(tiny_model)},
            "data": {"path": str(chat_data), "max_seq_length": 256},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
            "training": {"max_steps": 25, "learning_rate": 1e-2, "per_device_batch_size": 4,
                         "lr_scheduler": "constant", "warmup_ratio": 0.0, "seed": 0},
        }
        return RunSpec.model_validate(_merge(base, overrides))

    return build
