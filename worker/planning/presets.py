"""The YAML recipes under recipes/ as designer presets: a title, a description and the spec they set (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

RECIPES = Path(__file__).resolve().parent / "recipes"
# What a preset must not overwrite in the designer: the run's name and the user's own choice of model, data and
# system prompt (a recipe names model and data only as placeholders). Dotted spec paths, as the form names fields.
KEEP = ("name", "model.base_model", "model.gguf_file", "data.path", "data.dataset_id", "data.system_prompt")


@dataclass(frozen=True)
class Preset:
    """One recipe: its file stem as key, the comment block at its top as description."""

    key: str
    title: str
    description: str
    spec: dict[str, Any]

    def overrides(self) -> dict[str, Any]:
        """The recipe's settings without the model and data source it names as placeholders."""
        out: dict[str, Any] = {}
        for key, value in self.spec.items():
            if isinstance(value, dict):
                out[key] = {k: v for k, v in value.items() if f"{key}.{k}" not in KEEP}
            elif key not in KEEP:
                out[key] = value
        return out


def _read(path: Path) -> Preset:
    text = path.read_text(encoding="utf-8")
    comments = [line.lstrip("# ").rstrip() for line in text.splitlines() if line.startswith("#")]
    title, _, first = (comments[0] if comments else path.stem).partition(":")
    description = " ".join([first.strip(), *comments[1:]]).strip()
    return Preset(path.stem, title.strip(), description, yaml.safe_load(text) or {})


@cache
def presets() -> dict[str, Preset]:
    """Every recipe by key, in file-name order (they ship with the code, so read once)."""
    return {p.key: p for p in (_read(path) for path in sorted(RECIPES.glob("*.yaml")))}


def find(key: str) -> Preset | None:
    """The preset named `key`, or None."""
    return presets().get(key)
