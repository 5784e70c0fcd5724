"""What a registered local model's config.json says about it (read as JSON; no model code is run)."""

from __future__ import annotations

import json
from pathlib import Path

# Architectures name their context differently; the first present wins.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(folder: str | Path) -> int | None:
    """The model's longest sequence in tokens, or None when the folder has no readable config saying so."""
    config = Path(folder) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sections = [data, data.get("text_config") or {}] if isinstance(data, dict) else []
    for section in sections:
        for key in CONTEXT_KEYS:
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
