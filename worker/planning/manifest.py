"""The checkpoint manifest: the format a trainer writes last into a checkpoint folder and every reader checks.

One implementation for the trainer (resuming) and the studio (storing a checkpoint in the database). Plain
JSON and hashes only, so the worker's job runner and the web-side services need no torch to read it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "checkpoint.json"
FORMAT = 1
ALLOWED_SUFFIXES = {".safetensors", ".json"}  # plain data only: nothing a loader could unpickle


class ManifestMismatch(ValueError):
    """A folder that is not a whole checkpoint: no readable manifest, other files than it lists, or bad hashes."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(folder: Path, step: int, position: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the files now in folder: each with its sha256 and size."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    refused = [p.name for p in files if p.suffix not in ALLOWED_SUFFIXES]
    if refused:
        raise ManifestMismatch(f"a checkpoint may hold only safetensors and JSON, not {refused}")
    listing = {p.relative_to(folder).as_posix(): {"sha256": file_sha256(p), "size": p.stat().st_size} for p in files}
    return {"format": FORMAT, "step": step, "position": position, "files": listing}


def check(folder: Path, hashes: bool = True) -> dict[str, Any]:
    """The manifest of a whole checkpoint folder; ManifestMismatch says what is wrong with any other.

    hashes=False skips reading every file (a caller that hashes them anyway, as the blob store does, compares
    the listed sha256 itself).
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestMismatch(f"its {MANIFEST} is missing or unreadable ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ManifestMismatch(f"format {manifest.get('format')} is not {FORMAT}")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    if present != set(files):
        raise ManifestMismatch(f"its files {sorted(present)} differ from its list {sorted(files)}")
    for name, entry in files.items():
        if Path(name).suffix not in ALLOWED_SUFFIXES:
            raise ManifestMismatch(f"{name} is neither safetensors nor JSON")
        if hashes and file_sha256(folder / name) != entry["sha256"]:
            raise ManifestMismatch(f"{name} does not match its sha256 (damaged or half-written)")
    return manifest
