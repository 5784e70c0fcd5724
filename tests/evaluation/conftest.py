"""Fixtures of evaluation's tests: the tiny model registered, eval sets uploaded, real PEFT adapters stored as
succeeded runs on it (one with random B matrices, one whose B matrices are zero: it changes nothing)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from app.core.db import session_scope
from app.core.models import Run
from tests.support.adapters import make_adapter, store_adapter

ROWS = [
    {"prompt": "the cat and the dog", "completion": "play together", "pattern": "[a-z]"},
    {"prompt": "What is two plus two?", "completion": "four", "pattern": "^four$"},
    {"prompt": "Name a colour.", "completion": "blue"},
]
CHATS = [
    {"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris"}]},
]


@pytest.fixture(scope="session")
def adapter_folders(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real adapter (random B) and a no-op one (the same with B zeroed)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("eval-adapters")
    real = make_adapter(tiny_model_dir, root / "real", seed=7)
    zero = root / "zero"
    shutil.copytree(real, zero)
    weights = zero / "adapter_model.safetensors"
    tensors = {name: (t.zero_() if "lora_B" in name else t) for name, t in load_file(weights).items()}
    save_file(tensors, weights)
    (zero / "README.md").write_text("zero adapter\n")
    return {"real": real, "zero": zero}


@pytest.fixture
def tiny(client, tiny_model_dir: Path) -> dict:  # noqa: ANN001
    """The tiny model registered under a fresh name."""
    model = client.post("/api/models", json={"name": f"tiny-{uuid.uuid4().hex[:8]}", "ref": str(tiny_model_dir)})
    assert model.status_code == 201, model.text
    return model.json()


def upload(client, rows: list[dict], name: str = "eval") -> int:  # noqa: ANN001
    """A JSONL dataset of rows; its id."""
    body = "\n".join(json.dumps(r) for r in rows).encode()
    response = client.post("/api/datasets", files={"file": (f"{name}.jsonl", body)}, data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def adapter_run(resources, folder: Path, base_model_id: int, owner_id: int | None = None) -> tuple[int, str]:  # noqa: ANN001
    """A succeeded run on the base whose adapter is folder's files: (run id, adapter sha256)."""
    ref = store_adapter(resources, folder)
    with session_scope(resources.session_factory) as session:
        run = session.get(Run, ref.run_id)
        run.base_model_id, run.owner_id = base_model_id, owner_id
    return ref.run_id, ref.sha256
