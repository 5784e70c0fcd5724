"""Sizing a run before launch: the model's shape from its config.json, the data's size, the chosen device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.access import can_see
from app.core.models import Dataset, DatasetAnalysis, User
from app.core.repositories import catalog
from worker.planning.device_profiles import DeviceProfile, device_profiles, worker_profile
from worker.planning.estimate import Estimate, ModelShape, estimate, unavailable
from worker.planning.spec import RunSpec

CHARS_PER_TOKEN = 4  # English text in BPE vocabularies; the doctor's exact counts replace it when present


def devices(workers: list[dict[str, Any]]) -> dict[str, DeviceProfile]:
    """Live workers' devices when any are announced, else the profiles a user may choose from."""
    live = {w["hostname"]: worker_profile(w) for w in workers if w.get("hostname")}
    return live or device_profiles()


def pick_device(choice: str | None, workers: list[dict[str, Any]]) -> DeviceProfile:
    """The named worker or profile; by default the first live worker, else this machine's CPU."""
    options = devices(workers) | device_profiles()
    return options.get(choice or "") or next(iter(devices(workers).values()))


def model_shape(session: Session, base_model: str) -> tuple[ModelShape | None, str | None]:
    """(shape, None) from a registered local model's config.json, or (None, why it is unknown)."""
    entry = catalog.find_model(session, base_model)
    # Only a registered folder is read, and the answer names the model, never its path: a path a user typed
    # must not make the studio open files, nor tell which exist (only admins see where local models live).
    if entry is None and base_model.startswith(("/", "~", ".")):
        return None, f"'{base_model[:200]}' is not a registered model, so its size is unknown."
    if entry is None or entry.source == "hub":
        ref = entry.ref if entry else base_model[:200]
        return None, f"{ref} is a Hugging Face id; the studio does not download configs, so its size is unknown."
    config = Path(entry.ref) / "config.json"
    if not config.is_file():
        why = "holds only a GGUF file" if entry.gguf_file else "has no config.json"
        return None, f"The folder of model {entry.name} {why}; its shape is unknown until it is converted."
    try:
        return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8"))), None
    except (ValueError, json.JSONDecodeError) as exc:
        return None, f"The config.json of model {entry.name} cannot be read as a decoder config: {exc}."


def dataset_tokens(session: Session, spec: RunSpec, user: User | None = None) -> int | None:
    """Tokens in the dataset after truncation: the doctor's mean length if analysed, else bytes per row / 4.

    A dataset user may not see counts as unknown, so an estimate tells nothing about it."""
    dataset = session.get(Dataset, spec.data.dataset_id) if spec.data.dataset_id else None
    if dataset is None or not dataset.row_count or not can_see(user, dataset.owner_id):
        return None
    query = (select(DatasetAnalysis).where(DatasetAnalysis.dataset_id == dataset.id,
                                           DatasetAnalysis.status == "succeeded")
             .order_by(DatasetAnalysis.id.desc()).limit(1))
    analysis = session.scalars(query).first()
    mean = ((analysis.result or {}).get("token_stats") or {}).get("mean") if analysis else None
    per_row = mean or dataset.size_bytes / dataset.row_count / CHARS_PER_TOKEN
    return int(dataset.row_count * min(per_row, spec.data.max_seq_length))


def estimate_run(session: Session, spec: RunSpec, device: DeviceProfile, *, user: User | None = None) -> Estimate:
    """The estimate for `spec` on `device` (data sized only from a dataset user may see), or why there is none."""
    if not spec.model.base_model:
        return unavailable("Choose a base model to see an estimate.", device)
    shape, reason = model_shape(session, spec.model.base_model)
    if shape is None:
        return unavailable(reason or "unknown model", device)
    return estimate(spec, shape, device, dataset_tokens(session, spec, user))


def launch_estimate(session: Session, spec: RunSpec, workers: list[dict[str, Any]] | None, *,
                    user: User | None = None) -> dict[str, Any] | None:
    """The time estimate a run is queued with, kept on it to set beside how long it took: for the device the designer
    shows first (the first live worker, with its measured speed; else this machine's CPU); None where none is known."""
    result = estimate_run(session, spec, pick_device(None, workers or []), user=user)
    if not result.available or result.time_s is None:
        return None
    return {"time_s": result.time_s, "low_s": result.time_low_s, "high_s": result.time_high_s,
            "startup_s": result.startup_s, "tokens": result.tokens, "tokens_per_second": result.tokens_per_second,
            "device": result.device["name"], "worker": result.device["key"], "measured": result.measured}
