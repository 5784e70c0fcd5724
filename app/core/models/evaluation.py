"""An evaluation: one model (a base, or a run's adapter beside its base) generating on an eval set's prompts, scored,
and the report that says whether the adapter helped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class Evaluation(Base):
    """Queued by the web, computed by a worker's child process, stored whole when it succeeds."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                 default=None)
    model: Mapped[str] = mapped_column(String(200))  # as requested: a base's name, run-<id> or run-<id>@step-<k>
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True, default=None)
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id", ondelete="SET NULL"),
                                                      default=None)
    base_name: Mapped[str] = mapped_column(String(200))
    adapter_sha256: Mapped[str | None] = mapped_column(String(64), default=None)  # resolved when requested
    # A registry version (adapter:vN, adapter:alias) as resolved when requested: its files are what is evaluated.
    adapter_version_id: Mapped[int | None] = mapped_column(ForeignKey("adapter_versions.id", ondelete="SET NULL"),
                                                           default=None)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"), index=True,
                                                   default=None)
    general_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"),
                                                           default=None)
    scorers: Mapped[list[str]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # max_examples, max_new_tokens, seed, rubric
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed|cancelled
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)  # a running one stops at its next poll
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)  # while running
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far: a lost worker's is queued again
    progress_done: Mapped[int] = mapped_column(Integer, default=0)  # generations finished
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class EvaluationExample(Base):
    """One prompt of an evaluation: what each side answered and how every scorer scored it."""

    __tablename__ = "evaluation_examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    part: Mapped[str] = mapped_column(String(10), default="main")  # main | general (the general-ability set)
    index: Mapped[int] = mapped_column(Integer)  # 0-based row of its dataset
    prompt: Mapped[str] = mapped_column(Text)  # the prompt text, or the chat (JSON) without its final answer
    reference: Mapped[str] = mapped_column(Text, default="")
    base_output: Mapped[str] = mapped_column(Text, default="")
    adapter_output: Mapped[str | None] = mapped_column(Text, default=None)  # None: a base evaluated alone
    adapter_sha256: Mapped[str | None] = mapped_column(String(64), default=None)  # as the engine applied it
    base_scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # scorer → score in [0, 1] or None
    adapter_scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flip: Mapped[str | None] = mapped_column(String(10), default=None)  # fixed | regressed | None
