"""What a run leaves behind: the adapter folder (safetensors, tokenizer, spec, model card)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from worker.trainer.errors import TrainerError
from worker.trainer.spec import RunSpec


def library_versions() -> dict[str, str]:
    """Versions of the training stack, stored with every run so it can be reproduced."""
    import bitsandbytes
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(spec: RunSpec, final: dict[str, Any], versions: dict[str, str]) -> str:
    """A short README for the adapter: base, data, method, final losses, versions."""
    data = spec.data.path or ""
    sha = file_sha256(data) if data and Path(data).is_file() else "unknown"
    gguf = f" (GGUF `{spec.model.gguf_file}`)" if spec.model.gguf_file else ""
    lines = [
        f"# {spec.name or 'LoRA adapter'}", "",
        f"- Base model: `{spec.model.base_model}`{gguf}",
        f"- Dataset: `{data}` (sha256 `{sha}`)",
        f"- Method: {spec.method}, r={spec.lora.r}, alpha={spec.lora.alpha}, targets={spec.lora.resolved_targets()}",
        f"- Final train loss: {final.get('train_loss')}, eval loss: {final.get('eval_loss')}, "
        f"steps: {final.get('steps')}, tokens seen: {final.get('tokens_seen')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "", "The exact spec is in `spec.yaml`. Load with `PeftModel.from_pretrained(base, this_folder)`.", "",
    ]
    return "\n".join(lines)


def save_adapter(model: Any, tokenizer: Any, spec: RunSpec, out_dir: Path, final: dict[str, Any]) -> Path:
    """Write out_dir/adapter: adapter weights (safetensors only), config, tokenizer, spec.yaml, README.md."""
    adapter_dir = Path(out_dir) / "adapter"
    try:
        model.save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        (adapter_dir / "spec.yaml").write_text(spec.to_yaml(), encoding="utf-8")
        # Replaces PEFT's generic card with one that says what this run was.
        (adapter_dir / "README.md").write_text(model_card(spec, final, library_versions()), encoding="utf-8")
    except Exception as exc:  # a full disk, a lost mount (safetensors reports it as its own error type)
        raise TrainerError("adapter_save_failed", f"Could not write the adapter to {adapter_dir}: {exc}") from exc
    return adapter_dir
