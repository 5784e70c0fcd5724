"""The model card a registered version is downloaded with (README.md): what it is, where it came from (its
lineage), how it scored, and how to load and serve it."""

from __future__ import annotations

from typing import Any

from app.core.models import AdapterVersion, RegisteredAdapter
from app.core.serving_readiness import Readiness


def model_card(adapter: RegisteredAdapter, version: AdapterVersion, aliases: list[str],
               serving: list[Readiness]) -> str:
    """Markdown, from the version's lineage (nothing is read again: the card says what was recorded)."""
    lineage: dict[str, Any] = version.lineage or {}
    base = lineage.get("base_model") or {}
    run = lineage.get("run") or {}
    dataset = lineage.get("dataset") or {}
    spec = lineage.get("spec") or {}
    lora, training = spec.get("lora") or {}, spec.get("training") or {}
    name = f"{adapter.name}:v{version.version}"
    lines = [f"# {name}", ""]
    if adapter.description:
        lines += [adapter.description, ""]
    lines += [f"A LoRA adapter for **{version.base_name}**, registered in LoRA Studio"
              + (f" (aliases: {', '.join(aliases)})" if aliases else "") + ".", "",
              "## Lineage", "",
              f"- Files sha256 (LoRA Studio's adapter hash): `{version.sha256}`",
              f"- Base model: {base.get('name', version.base_name)} ({base.get('source', '?')}: "
              f"`{base.get('ref', '?')}`)" + (f", revision {base['revision']}" if base.get("revision") else "")]
    fingerprint = base.get("fingerprint") or {}
    if fingerprint:
        lines.append("- Base files sha256: " + ", ".join(f"{k} `{str(v)[:16]}…`" for k, v in fingerprint.items() if v))
    if version.source == "import":
        lines.append(f"- Imported (rank {(lineage.get('import') or {}).get('r')}), registered by {version.created_by}")
    else:
        what = f"step {version.step}" if version.step else "final adapter"
        lines.append(f"- Trained by run #{run.get('id')} '{run.get('name', '')}' ({run.get('method', 'lora')}, "
                     f"{what}, {run.get('steps')} steps)")
    if dataset:
        lines.append(f"- Dataset: {dataset.get('name')} (sha256 `{dataset.get('sha256')}`, canonical "
                     f"`{dataset.get('canonical_sha256')}`)")
    if lora:
        lines.append(f"- LoRA: r {lora.get('r')}, alpha {lora.get('alpha')}, targets {lora.get('target_modules')}"
                     + (", rsLoRA" if lora.get("use_rslora") else "") + (", DoRA" if lora.get("use_dora") else ""))
    if training:
        lines.append(f"- Training: lr {training.get('learning_rate')}, epochs {training.get('num_epochs')}, "
                     f"max steps {training.get('max_steps')}, batch {training.get('per_device_batch_size')}")
    if lineage.get("library_versions"):
        lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(lineage["library_versions"].items())))
    if lineage.get("device"):
        lines.append(f"- Device: {lineage['device']}")
    lines += ["", "## Evaluation", ""]
    evaluations = lineage.get("evaluations") or []
    if not evaluations:
        lines.append("No evaluation of its run was recorded when it was registered.")
    for evaluation in evaluations:
        main = (evaluation.get("summary") or {}).get("main") or {}
        lines.append(f"- Evaluation #{evaluation['id']} on dataset #{evaluation.get('dataset_id')} "
                     f"({main.get('n')} examples)" + (": no measurable effect" if main.get("no_measurable_effect")
                                                      else ""))
        for scorer, sides in (main.get("scorers") or {}).items():
            lines.append(f"  - {scorer}: base {_pct(sides.get('base'))}, adapter {_pct(sides.get('adapter'))}")
    lines += ["", "## Use", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM", "",
              f"base = AutoModelForCausalLM.from_pretrained({base.get('ref', version.base_name)!r})",
              "model = PeftModel.from_pretrained(base, \".\")  # this folder", "```", ""]
    for verdict in serving:
        lines.append(f"**{verdict.server}**: " + (f"`{verdict.command}`" if verdict.ready
                                                 else "not servable as is: " + " ".join(verdict.problems)))
    return "\n".join(lines) + "\n"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "n/a"
