"""The end state of a job attempt, decided from what its runner saw: a pure rule, tested as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from worker.planning.reports import Error, FinalNumbers, Finished

Status = Literal["succeeded", "cancelled", "failed", "superseded"]


@dataclass(frozen=True)
class Seen:
    """What a runner saw of one attempt, once its child has exited."""

    returncode: int
    finished: Finished | None = None  # the child's own word that it ended well
    error: Error | None = None  # the child's own word that it failed
    cancel_requested: bool = False
    lost: bool = False  # the run went to another attempt meanwhile: this one records nothing more
    failure: dict[str, Any] | None = None  # the runner's own failure while recording (storing a checkpoint)
    output_saved: bool = False  # the child's output folder exists (a partial adapter after a cancel)
    stderr_tail: str = ""


@dataclass(frozen=True)
class Outcome:
    """The attempt's end: a status, whether to store the child's output, its final numbers or error."""

    status: Status
    store_output: bool = False
    final: FinalNumbers | None = None
    error: dict[str, Any] | None = None


def decide(seen: Seen) -> Outcome:
    """From what was seen to the end state; the first rule that applies wins."""
    if seen.lost:
        return Outcome("superseded")
    if seen.failure:
        return Outcome("failed", error=seen.failure)
    if seen.finished is not None and seen.returncode == 0:
        return Outcome(seen.finished.status, store_output=True, final=seen.finished.final)
    if seen.cancel_requested:  # stopped by the cancel, cleanly or by the kill after the grace period
        return Outcome("cancelled", store_output=seen.output_saved)
    error = seen.error.as_failure() if seen.error else {
        "code": "trainer_crashed", "message": f"The trainer exited with code {seen.returncode} without reporting "
        "an error.", "traceback": ""}
    return Outcome("failed", error={**error, "traceback": error["traceback"] or seen.stderr_tail})
