"""Registering base models by hub id or local folder."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from app.core.access import sees_everything
from app.core.errors import StudioError
from app.core.models import BaseModelEntry, User
from app.core.repositories import catalog

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")


def register_model(session: Session, name: str, ref: str, gguf_file: str | None = None, *,
                   user: User | None = None, trust_remote_code: bool = False) -> BaseModelEntry:
    """Add a model to the shared catalog; a folder must exist and hold a config.json or the named GGUF file.

    Any user may register a hub id; only admins a folder, since it names a path on the studio's machines and
    the answer would tell which paths exist there. Only admins may let a model's own code run
    (trust_remote_code): that code runs with the worker's rights.
    """
    ref, name = ref.strip(), (name.strip() or ref.strip())
    source = "local" if ref.startswith(("/", "~", ".")) else "hub"
    if source == "local" and not sees_everything(user):
        raise StudioError("forbidden", "admin_only", "Only an admin may register a model folder on the studio's "
                          "machines; give a Hugging Face id like 'org/name', or ask an admin.", field="ref")
    if trust_remote_code and not sees_everything(user):
        raise StudioError("forbidden", "admin_only", "Only an admin may allow a model's own code to run "
                          "(trust_remote_code); register it without, or ask an admin.", field="trust_remote_code")
    if source == "local":
        ref = str(_check_folder(Path(ref).expanduser(), gguf_file))
    elif not HUB_ID.match(ref) or ".." in ref:
        raise StudioError("invalid", "invalid_model_ref", "Give a Hugging Face id like 'org/name' or an "
                          "absolute folder path.", field="ref")
    if catalog.find_model(session, name) is not None:
        raise StudioError("conflict", "model_exists", f"A model named '{name}' is registered already.", field="name")
    entry = BaseModelEntry(name=name, source=source, ref=ref, gguf_file=gguf_file or None,
                           trust_remote_code=trust_remote_code)
    session.add(entry)
    session.flush()
    return entry


def _check_folder(folder: Path, gguf_file: str | None) -> Path:
    folder = folder.resolve()
    if not folder.is_dir():
        raise StudioError("invalid", "model_folder_missing", f"No folder at {folder}.", field="ref")
    if gguf_file and ("/" in gguf_file or not (folder / gguf_file).is_file()):
        raise StudioError("invalid", "gguf_missing", f"No file {gguf_file} in {folder}.", field="gguf_file")
    if not gguf_file and not (folder / "config.json").is_file():
        raise StudioError("invalid", "not_a_model_folder", f"{folder} has no config.json; point to a saved "
                          "Hugging Face model folder, or name its GGUF file.", field="ref")
    if not gguf_file and not any(folder.glob("*.safetensors")):
        # .bin/.pt weights are pickles, which can run code when loaded; the trainer only loads safetensors.
        raise StudioError("invalid", "unsafe_weights", f"{folder} has no .safetensors weights. The studio loads "
                          "only safetensors; convert the model (load it and save_pretrained it in a trusted "
                          "environment) or point to its GGUF file.", field="ref")
    return folder
