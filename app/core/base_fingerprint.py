"""A registered base model's identity as files, recorded when a version is registered and compared when it is used:
sha256 of its config.json, its tokenizer and its chat template. Read from a local folder only (the web does not
download a hub model's files; the generation service checks those when it loads them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt")
PARTS = {"config": "config.json", "tokenizer": "the tokenizer", "chat_template": "the chat template"}


def fingerprint(source: str, ref: str) -> dict[str, str | None] | None:
    """{config, tokenizer, chat_template: sha256 or None where the folder has none}; None for a hub model or a
    folder without a readable config.json."""
    folder = Path(ref)
    if source != "local" or not (folder / "config.json").is_file():
        return None
    try:
        tokenizer = hashlib.sha256()
        found = False
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                tokenizer.update(name.encode() + b"\0" + (folder / name).read_bytes())
                found = True
        return {"config": _sha(folder / "config.json"), "tokenizer": tokenizer.hexdigest() if found else None,
                "chat_template": _template_sha(folder)}
    except OSError:
        return None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _template_sha(folder: Path) -> str | None:
    """The chat template's text, from chat_template.jinja or tokenizer_config.json."""
    if (folder / "chat_template.jinja").is_file():
        return _sha(folder / "chat_template.jinja")
    try:
        template = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(template).encode()).hexdigest() if template else None


def drift(recorded: dict[str, str | None] | None, current: dict[str, str | None] | None) -> list[str]:
    """What changed in the base since the version was registered, in words (empty when nothing did, or when either
    side could not be read)."""
    if not recorded or not current:
        return []
    return [f"{PARTS[key]} of the base model changed since this version was registered"
            for key in PARTS if recorded.get(key) != current.get(key)]
