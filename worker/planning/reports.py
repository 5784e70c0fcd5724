"""What a job's child process reports, one JSON object a line on its stdout: the typed, versioned vocabulary that
the trainer writes and the job runner, `lorastudio train` and the studio's services read.

"Reports" are this stream alone. The studio's other streams have names of their own: the run's *timeline*
(app.core.models.TimelineEntry, what a person reads on the run page), *live updates* (app.core.live, what
Redis pub/sub carries to browsers) and the SSE events of /api/runs/{id}/events that relay them.

Every report carries `v`, the vocabulary's version: a reader refuses a line of another version with a clear error
instead of misreading it. Add a field with a default and the version stays; change or remove one and it goes up.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

VERSION = 1
# The other half of the child protocol: a supervised child finds its runner's pid here, to die with it.
PARENT_PID_ENV = "LORASTUDIO_TRAINER_PARENT"


class _Report(BaseModel):
    # JSON has no NaN or inf: they travel as "NaN"/"Infinity" strings, so a diverging loss stays visible.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    v: Literal[1] = VERSION

    def to_json(self) -> str:
        """The report as one line of the stream."""
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        """The report as the dict its JSON line decodes to (NaN and inf kept as floats)."""
        return self.model_dump()


class Started(_Report):
    """Training has begun: where it runs and how big it is."""

    type: Literal["started"] = "started"
    device: str
    versions: dict[str, str] = Field(default_factory=dict, description="torch, transformers, peft, bitsandbytes")
    allocator: str | None = Field(None, description="The heap allocator it runs on (worker.planning.allocator)")
    total_steps: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    resolved: dict[str, str] = Field(default_factory=dict, description="The spec's 'auto' choices as fixed for this "
                                     "run ({optimizer, compute_dtype}); later attempts reuse them")


class Metric(_Report):
    """One report of the training loop (train or eval); only the measured values are present."""

    type: Literal["metric"] = "metric"
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    eval_loss: float | None = None
    tokens_seen: int | None = None
    tokens_per_second: float | None = Field(None, description="Train tokens per second since the previous train log")
    tokens_per_second_avg: float | None = Field(None, description="Train tokens per second since the attempt began")
    elapsed_s: float | None = None
    memory_mb: float | None = Field(None, description="Peak MiB: GPU tensors since training began, else peak RSS")
    host_rss_mb: float | None = Field(None, description="The trainer process's resident memory now, MiB")
    gpu_reserved_mb: float | None = Field(None, description="The CUDA caching allocator's peak reservation, MiB")
    gpu_used_mb: float | None = Field(None, description="The whole GPU's memory in use now, MiB")
    logged_at: float | None = Field(None, description="Wall clock of the report, for end-to-end latency")

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def values(self) -> dict[str, Any]:
        """The measured values, JSON-safe (NaN and inf as strings), as a metric point stores them."""
        return json.loads(self.model_dump_json(exclude_none=True, exclude={"v", "type", "step"}))


class Log(_Report):
    """Progress in words: "loading model", "tokenising 91 examples" …"""

    type: Literal["log"] = "log"
    message: str
    at: float | None = Field(None, description="Wall clock, where the time matters (the process start)")


class Checkpoint(_Report):
    """A whole checkpoint folder (worker/trainer/checkpoint.py); the reader may move it away."""

    type: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class FinalNumbers(BaseModel):
    """A run's last logged losses and its size in steps and tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    train_loss: float | None = None
    eval_loss: float | None = None
    steps: int = 0
    tokens_seen: int = 0


class Finished(_Report):
    """The job ended by itself (succeeded) or by a cooperative stop (cancelled), its output saved."""

    type: Literal["finished"] = "finished"
    status: Literal["succeeded", "cancelled"]
    final: FinalNumbers = Field(default_factory=FinalNumbers)


class Error(_Report):
    """The job failed: a stable code, a message a person can act on, and the traceback's tail."""

    type: Literal["error"] = "error"
    code: str
    message: str
    traceback: str = ""

    def as_failure(self) -> dict[str, str]:
        """The error as a run stores it."""
        return {"code": self.code, "message": self.message, "traceback": self.traceback}


class Result(_Report):
    """What a job that computes something (the dataset doctor) found: its product as JSON."""

    type: Literal["result"] = "result"
    data: dict[str, Any]


class Sample(BaseModel):
    """One prompt's answer in a sampling round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(description="The prompt's place among the run's sample prompts")
    prompt: str = Field(description="The prompt as a person reads it (the last user turn)")
    reference: str | None = Field(None, description="The held-out answer, or the expected one given in the spec")
    output: str
    seconds: float = Field(description="Generation time of this answer")
    score: float | None = Field(None, description="1 or 0 by the prompt's scorer (None: it has none, or the "
                                "scorer could not judge it)")


SampleKind = Literal["base", "eval", "final"]
SkipReason = Literal["budget", "cancelled"]


class Samples(_Report):
    """A sampling round: the base model's answers (kind "base", step 0), the adapter's at an evaluation ("eval")
    or at the end ("final"); `skipped` says why a round produced none."""

    type: Literal["samples"] = "samples"
    kind: SampleKind
    step: int
    samples: list[Sample] = Field(default_factory=list)
    skipped: SkipReason | None = None
    seconds: float = Field(0.0, description="This round's generation time")
    sampling_s: float = Field(0.0, description="Generation time of this attempt so far, this round included")
    train_s: float = Field(0.0, description="Training time of this attempt so far, sampling excluded")
    budget: float = Field(0.0, description="The spec's samples.budget, the share sampling may take")
    resumed_from: int = Field(0, description="The step this attempt began at (a base round's)")


Report = Annotated[Started | Metric | Log | Checkpoint | Finished | Error | Result | Samples,
                   Field(discriminator="type")]
_ADAPTER: TypeAdapter[Report] = TypeAdapter(Report)


class NotAReport(ValueError):
    """A line of the stream that is not a report of this version."""


def parse(line: str | bytes) -> Report:
    """One line of the stream as its report; NotAReport names what is wrong with it."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise NotAReport(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NotAReport("not a JSON object")
    if data.get("v") != VERSION:
        raise NotAReport(f"report version {data.get('v')!r}; this reader speaks version {VERSION}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise NotAReport(str(exc)) from None
