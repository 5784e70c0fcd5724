"""Answers generated during training: the base model's (step 0) and the adapter's at each sampled step."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class GenerationSample(Base):
    """One prompt's answer in one sampling round of a run (kind base, eval or final)."""

    __tablename__ = "generation_samples"
    __table_args__ = (UniqueConstraint("run_id", "kind", "step", "prompt_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)  # 0 for the base model's answers
    kind: Mapped[str] = mapped_column(String(16))  # base | eval | final
    prompt_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float)  # this answer's generation time
    score: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)  # by the prompt's scorer, if any
    train_seconds: Mapped[float] = mapped_column(Float)  # the attempt's training time when the round ran
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
