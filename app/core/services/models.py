"""Registering base models by hub id or local folder."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from app.core.access import sees_everything
from app.core.errors import StudioError
from app.core.models import BaseModelEntry, User
from app.core.repositories import catalog
from app.core.services import audit
from worker.planning.inputs import gguf_path
from worker.planning.spec import ModelSpec

# The Hub's own rule: `name` or `owner/name`, ASCII letters, digits, '.', '_', '-', at most 96 each, no '--' or '..'
# (checked below), no further segments: a longer path would name a file or a folder, not a repository.
NAME_LENGTH, REF_LENGTH = 200, 1000  # base_models.name, base_models.ref
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def register_model(session: Session, name: str, ref: str, gguf_file: str | None = None, *,
                   user: User | None = None, trust_remote_code: bool = False) -> BaseModelEntry:
    """Add a model to the shared catalog; a folder must exist and hold a config.json or the named GGUF file.

    Any user may register a hub id; only admins a folder, since it names a path on the studio's machines and
    the answer would tell which paths exist there. Only admins may let a model's own code run
    (trust_remote_code): that code runs with the worker's rights.
    """
    ref, name = ref.strip(), (name.strip() or ref.strip())
    if len(name) > NAME_LENGTH or not name.isprintable():
        raise StudioError("invalid", "invalid_model_name", f"Give a name of at most {NAME_LENGTH} printable "
                          "characters.", field="name")
    if len(ref) > REF_LENGTH or not ref.isprintable():
        raise StudioError("invalid", "invalid_model_ref", f"Give a Hugging Face id like 'org/name' or, admins, an "
                          f"absolute folder path of at most {REF_LENGTH} characters.", field="ref")
    source = "local" if ref.startswith(("/", "~", ".")) else "hub"
    if source == "local" and not sees_everything(user):
        raise StudioError("forbidden", "admin_only", "Only an admin may register a model folder on the studio's "
                          "machines; give a Hugging Face id like 'org/name', or ask an admin.", field="ref")
    if trust_remote_code and not sees_everything(user):
        raise StudioError("forbidden", "admin_only", "Only an admin may allow a model's own code to run "
                          "(trust_remote_code); register it without, or ask an admin.", field="trust_remote_code")
    if source == "local":
        ref = str(_check_folder(Path(ref).expanduser(), gguf_file))
    elif not HUB_ID.fullmatch(ref) or ".." in ref or "--" in ref or ref.endswith(".git"):
        raise StudioError("invalid", "invalid_model_ref", "Give a Hugging Face id like 'org/name' (letters, digits, "
                          "'.', '_', '-'; one '/') or, admins, an absolute folder path.", field="ref")
    elif gguf_file:
        _check_gguf_name(gguf_file)
    if catalog.find_model(session, name) is not None:
        raise StudioError("conflict", "model_exists", f"A model named '{name}' is registered already.", field="name")
    entry = BaseModelEntry(name=name, source=source, ref=ref, gguf_file=gguf_file or None,
                           trust_remote_code=trust_remote_code)
    session.add(entry)
    session.flush()
    if source == "local" or trust_remote_code:  # a path on the studio's machines, or code that will run there
        audit.record(session, "model.register", name, source=source, ref=ref, trust_remote_code=trust_remote_code)
    return entry


def _check_folder(folder: Path, gguf_file: str | None) -> Path:
    folder = folder.resolve()
    if not folder.is_dir():
        raise StudioError("invalid", "model_folder_missing", f"No folder at {folder}.", field="ref")
    if gguf_file:
        _check_gguf_name(gguf_file)
    if gguf_file and gguf_path(str(folder), gguf_file) is None:  # missing, or (through a symlink) outside folder
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


def _check_gguf_name(name: str) -> None:
    """A GGUF file is named by its plain file name: no folders, no '..', ending in .gguf."""
    try:
        ModelSpec.check_gguf_name(name)
    except ValueError as exc:
        raise StudioError("invalid", "invalid_gguf_file", f"{exc}.", field="gguf_file") from None
