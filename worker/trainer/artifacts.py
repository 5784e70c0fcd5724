"""What a run leaves behind: the adapter folder (safetensors, tokenizer, spec, model card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.planning.inputs import TrainingInputs
from worker.planning.manifest import file_sha256
from worker.planning.reports import FinalNumbers
from worker.planning.spec import RunSpec
from worker.trainer.errors import TrainerError


def library_versions() -> dict[str, str]:
    """Versions of the training stack, stored with every run so it can be reproduced."""
    import bitsandbytes
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "bitsandbytes": bitsandbytes.__version__}


def model_card(spec: RunSpec, inputs: TrainingInputs, final: FinalNumbers, versions: dict[str, str]) -> str:
    """A short README for the adapter: base, data, method, final losses, versions, and where it came from."""
    gguf = f" (GGUF `{inputs.gguf_file}`)" if inputs.gguf_file else ""
    lines = [
        f"# {spec.name or 'LoRA adapter'}", "",
        f"- Base model: {_named(inputs.provenance and inputs.provenance.model_name, inputs.model_ref)}{gguf}",
        f"- Dataset: {_dataset(inputs)}",
        f"- Method: {spec.method}, r={spec.lora.r}, alpha={spec.lora.alpha}, targets={spec.lora.resolved_targets()}",
        f"- Final train loss: {final.train_loss}, eval loss: {final.eval_loss}, "
        f"steps: {final.steps}, tokens seen: {final.tokens_seen}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    origin = inputs.provenance
    if origin and origin.studio_run_id is not None:
        lines.append(f"- LoRA Studio run {origin.studio_run_id} ({origin.run_name}); `spec.yaml` is the spec as "
                     "submitted to the studio.")
    lines += ["", "The exact spec is in `spec.yaml`. Load with `PeftModel.from_pretrained(base, this_folder)`.", ""]
    return "\n".join(lines)


def _named(name: str | None, ref: str) -> str:
    return f"'{name}': `{ref}`" if name else f"`{ref}`"


def _dataset(inputs: TrainingInputs) -> str:
    """The dataset by the name a person gave it and the sha256 of the file they gave (else the file read here)."""
    origin = inputs.provenance
    if origin is None:
        path = Path(inputs.data_path)
        sha = file_sha256(path) if path.is_file() else "unknown"
        return f"`{inputs.data_path}` (sha256 `{sha}`)"
    rows = f", {origin.dataset_rows} rows" if origin.dataset_rows is not None else ""
    return f"'{origin.dataset}'{rows} (sha256 `{origin.dataset_sha256}` of the file as given)"


def save_adapter(model: Any, tokenizer: Any, spec: RunSpec, inputs: TrainingInputs, out_dir: Path,
                 final: FinalNumbers) -> Path:
    """Write out_dir/adapter: adapter weights (safetensors only), config, tokenizer, spec.yaml, README.md."""
    adapter_dir = Path(out_dir) / "adapter"
    try:
        model.save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        (adapter_dir / "spec.yaml").write_text(spec.to_yaml(), encoding="utf-8")
        # Replaces PEFT's generic card with one that says what this run was.
        card = model_card(spec, inputs, final, library_versions())
        (adapter_dir / "README.md").write_text(card, encoding="utf-8")
    except Exception as exc:  # a full disk, a lost mount (safetensors reports it as its own error type)
        raise TrainerError("adapter_save_failed", f"Could not write the adapter to {adapter_dir}: {exc}") from exc
    return adapter_dir
