"""A training run and the artifacts it produced."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.advice import advice_for
from app.core.db import Base, utcnow


class RunStatus(enum.StrEnum):
    """Lifecycle: queued → running → succeeded | failed | cancelled."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the three end states."""
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled)


class Run(Base):
    """The database is the source of truth for a run's state; Celery only carries its id."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.queued, index=True)
    method: Mapped[str] = mapped_column(String(10))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    # Who launched it; only they (and admins) see it, its metrics and its adapter. NULL: admins only.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                 default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Higher starts first; within one priority the owner with the fewest running runs, then the owner served longest
    # ago, then their oldest (repositories.runs.fairest_queued). Not part of the spec: a clone starts at 0 again.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # The Redis server (its INFO run_id) that holds this run's queue message; a restarted Redis lost it.
    dispatched_to: Mapped[str | None] = mapped_column(String(64), default=None)
    # The class of worker it trains on (worker.planning.device_classes: cpu, gpu24, …); NULL: any training worker,
    # until its first worker pins it. Its queue follows it, on requeue too.
    device_class: Mapped[str | None] = mapped_column(String(16), default=None)
    # Choices its spec left to "auto", as its first attempt resolved them ({optimizer, compute_dtype}): later
    # attempts reuse them, so a resume never meets a checkpoint written with another optimizer.
    resolved: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    device: Mapped[str | None] = mapped_column(String(200), default=None)
    versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    total_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    # The highest metric-point seq given out: the next point gets the next one. Never lowered, so the points a
    # resumed attempt replaces keep their seqs and a live view that saw them takes the new points as new.
    metric_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_loss: Mapped[float | None] = mapped_column(default=None)
    # The time estimate it was queued with (services.estimates.launch_estimate: seconds, range, device, measured or
    # not), kept to set beside how long it took; NULL where none could be made (an unknown model shape).
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    trainable_params: Mapped[int | None] = mapped_column(BigInteger, default=None)
    total_params: Mapped[int | None] = mapped_column(BigInteger, default=None)
    final: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(50), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    error_traceback: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def error_advice(self) -> str | None:
        """What to do about this run's failure, if it failed."""
        return advice_for(self.error_code) if self.error_code else None

    @property
    def run_status(self) -> RunStatus:
        """The status as an enum."""
        return RunStatus(self.status)


class Artifact(Base):
    """A file a run produced (adapter weights, config, tokenizer, spec, model card)."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # "adapter"
    name: Mapped[str] = mapped_column(String(255))  # path inside the download
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"))
    size: Mapped[int] = mapped_column(BigInteger)
