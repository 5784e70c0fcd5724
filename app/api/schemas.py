"""Response shapes of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DatasetOut(_Out):
    """A stored dataset."""

    id: int
    name: str
    filename: str
    file_type: str
    format: str
    row_count: int
    size_bytes: int
    sha256: str
    columns: list[str]
    preview: list[dict[str, Any]]
    created_at: datetime


class ModelIn(BaseModel):
    """A base model to register."""

    name: str = ""
    ref: str
    gguf_file: str | None = None
    trust_remote_code: bool = Field(False, description="Let runs execute code shipped with the model (admins only).")


class ModelOut(_Out):
    """A registered base model."""

    id: int
    name: str
    source: str
    ref: str
    gguf_file: str | None
    trust_remote_code: bool
    created_at: datetime


class RunOut(_Out):
    """A run and its state."""

    id: int
    name: str
    status: str
    method: str
    spec: dict[str, Any]
    dataset_id: int
    base_model_id: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    priority: int = Field(0, description="Higher starts first among queued runs (an admin raises it).")
    cancel_requested: bool
    device: str | None
    device_class: str | None = Field(None, description="The class of worker it is routed to (cpu, gpu24, …; kept "
                                     "on requeue); null: any training worker, until its first worker pins it.")
    resolved: dict[str, str] = Field(default_factory=dict, description="Its 'auto' choices as its first attempt "
                                     "fixed them (optimizer, compute_dtype); later attempts reuse them.")
    versions: dict[str, str]
    total_steps: int | None
    current_step: int
    last_loss: float | None
    trainable_params: int | None
    total_params: int | None
    estimate: dict[str, Any] | None = Field(
        None, description="The time estimate it was queued with: time_s (low_s-high_s), startup_s, tokens, "
        "tokens_per_second, device, worker, measured (the device's calibrated speed, or a datasheet figure).")
    final: dict[str, Any]
    error_code: str | None
    error_message: str | None
    error_traceback: str | None
    error_advice: str | None


class TimelineEntryOut(_Out):
    """One entry of a run's timeline."""

    kind: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class MetricOut(_Out):
    """One metric point."""

    seq: int
    step: int
    values: dict[str, Any]
