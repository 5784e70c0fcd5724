"""Turn a GGUF checkpoint into a normal Hugging Face folder (safetensors + tokenizer + chat template)."""

from __future__ import annotations

from pathlib import Path


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise `gguf_path` with transformers and save model and tokenizer into `out_dir`; returns out_dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        from worker.trainer.errors import TrainerError

        raise TrainerError("model_not_found", f"No GGUF file at {gguf_path}; check the path or upload it again.")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # Loading dequantises every tensor; only the quantizer marker remains, and it forbids saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)  # safetensors is the default and the only format we write
    tokenizer.save_pretrained(out_dir)  # includes chat_template.jinja when the GGUF carried one
    return out_dir
