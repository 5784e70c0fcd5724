"""What the evaluation child is given (one JSON file, written by the job kind): torch-free."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.generation.protocol import AdapterRef, BaseRef


class JudgeConfig(BaseModel):
    """The admin's judge endpoint (Settings.judge_*)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key: str = ""
    model: str = ""
    timeout_s: float = 60.0


class EvaluationInputs(BaseModel):
    """The model, the examples of each part, the scorers and the generation's bounds."""

    model_config = ConfigDict(extra="forbid")

    base: BaseRef
    adapter: AdapterRef | None = None
    adapter_dir: str | None = None  # the adapter's files, exported by the job kind and checked against its sha256
    examples: list[dict[str, Any]]
    general: list[dict[str, Any]] = Field(default_factory=list)  # the general-ability set, if one was attached
    scorers: list[str]
    max_new_tokens: int = 64
    seed: int = 0
    rubric: str | None = None
    judge: JudgeConfig | None = None
    batch_size: int = Field(8, ge=1, le=256)  # generations decoded together
