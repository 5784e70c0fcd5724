"""A web-only install, simulated: with the training libraries made unimportable, build the app and use it.

Run as a script in a fresh interpreter (tests/test_web_install.py does): `python web_without_training.py DATA_DIR
REDIS_URL`. The blocker goes onto sys.meta_path before anything of the studio is imported; the script prints one
JSON object saying what each request answered, what the training-only CLI commands said, and which blocked
packages ended up loaded (none should: an import of one raises, and nothing may have loaded one before).
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path
from typing import Any

# What `pip install '.[train]'` adds, and what those bring along (numpy, tokenizers, the hub client): a web-only
# install has none of them.
BLOCKED = frozenset({"torch", "transformers", "peft", "accelerate", "bitsandbytes", "safetensors", "gguf",
                     "sentencepiece", "numpy", "tokenizers", "huggingface_hub"})


class TrainingBlocker:
    """A meta path finder that answers every import of a blocked package as if it were not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        """Raise ModuleNotFoundError for a blocked top-level package; leave every other import to the others."""
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: a web-only install)", name=name)


def loaded_blocked() -> list[str]:
    """The blocked packages present in sys.modules."""
    return sorted({m.partition(".")[0] for m in sys.modules} & BLOCKED)


sys.meta_path.insert(0, TrainingBlocker())
PRELOADED = loaded_blocked()  # by a .pth file at start-up, say: then the blocker came too late to tell anything

LLAMA_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256}
CHAT_ROW = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


def main(data_dir: str, redis_url: str) -> dict:
    """Migrate a fresh SQLite database, build the app, sign in by API token and make the requests."""
    from fastapi.testclient import TestClient

    from app.core import schema
    from app.core.config import Settings
    from app.core.resources import Resources
    from app.main import create_app
    from tests.support.accounts import create_account

    root = Path(data_dir)
    url = f"sqlite:///{root / 'studio.db'}"
    schema.upgrade(url)
    settings = Settings(data_dir=root, DATABASE_URL=url, REDIS_URL=redis_url, queue=f"test-{uuid.uuid4().hex[:8]}")
    res = Resources(settings)
    admin = create_account(res, "web-only-admin", admin=True)
    model_dir = _model_folder(root / "model")
    try:
        with TestClient(create_app(res), headers=admin.headers) as client:
            statuses, bodies = _requests(client, str(model_dir))
    finally:
        res.redis.delete(settings.queue)  # the queued run's message: no worker listens on this queue
    return {"preloaded": PRELOADED, "statuses": statuses, "estimate": bodies["estimate"], "cli": _cli(root),
            "loaded": loaded_blocked()}


def _model_folder(folder: Path) -> Path:
    """A registrable local model: a Llama config.json and an empty weights file the web never opens."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def _requests(client: Any, model_dir: str) -> tuple[list[tuple[str, int]], dict]:
    """Pages and API routes, in the order a user meets them: ("METHOD path", status) each, and the estimate."""
    statuses: list[tuple[str, int]] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        statuses.append((f"{method} {path}", response.status_code))
        return response

    call("GET", "/healthz")
    call("GET", "/login")
    model = call("POST", "/api/models", json={"name": "tiny", "ref": model_dir}).json()
    dataset = call("POST", "/api/datasets", files={"file": ("chat.jsonl", CHAT_ROW)}).json()
    call("POST", "/api/datasets", files={"file": ("chat.parquet", _parquet(CHAT_ROW))})  # pyarrow, no numpy
    call("GET", "/datasets")
    call("GET", f"/datasets/{dataset.get('id')}")
    call("GET", "/models")
    call("GET", "/runs/new")
    call("POST", "/runs/new/estimate", data={"model.base_model": model.get("name"), "estimate_device": "gpu-24"})
    call("GET", "/api/estimate/devices")
    spec = {"model": {"base_model": model.get("name")}, "data": {"dataset_id": dataset.get("id")},
            "training": {"max_steps": 2}}
    estimate = call("POST", "/api/estimate?device=gpu-24", json=spec).json()
    run = call("POST", "/api/runs", json=spec).json()
    call("GET", f"/runs/{run.get('id')}")
    call("GET", "/")
    return statuses, {"estimate": estimate}


def _parquet(jsonl_row: bytes) -> bytes:
    """The row as a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([json.loads(jsonl_row)]), sink)
    return sink.getvalue()


def _cli(root: Path) -> dict[str, list]:
    """What each command that needs the training extra says here: [exit code, output]."""
    from typer.testing import CliRunner

    from app.cli import cli

    spec = root / "spec.yaml"
    spec.write_text("data: {path: chat.jsonl}\n")
    runner = CliRunner()
    commands = {"up": ["up"], "worker": ["worker"], "train": ["train", str(spec)], "demo-model": ["demo-model"]}
    results = {name: runner.invoke(cli, argv) for name, argv in commands.items()}
    return {name: [r.exit_code, r.output] for name, r in results.items()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
