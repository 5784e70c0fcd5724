"""The end state of an attempt, as a table: what the runner saw → status, whether the output is stored, error."""

from __future__ import annotations

import pytest

from worker.jobs.outcome import Seen, decide
from worker.planning.reports import Error, FinalNumbers, Finished

DONE = Finished(status="succeeded", final=FinalNumbers(train_loss=0.5, steps=3, tokens_seen=90))
STOPPED = Finished(status="cancelled", final=FinalNumbers(steps=1))
OOM = Error(code="out_of_memory", message="The device ran out of memory.", traceback="trace")
SAVE_FAILED = {"code": "checkpoint_save_failed", "message": "disk full"}

CASES = [
    # (what was seen, status, store output, error code)
    (Seen(0, finished=DONE), "succeeded", True, None),
    (Seen(0, finished=STOPPED, cancel_requested=True), "cancelled", True, None),
    (Seen(1, finished=DONE), "failed", False, "trainer_crashed"),  # said it finished, then exited badly
    (Seen(1, error=OOM), "failed", False, "out_of_memory"),
    (Seen(-9), "failed", False, "trainer_crashed"),
    (Seen(-9, cancel_requested=True, output_saved=True), "cancelled", True, None),  # killed after the grace period
    (Seen(-9, cancel_requested=True, output_saved=False), "cancelled", False, None),
    (Seen(1, error=OOM, cancel_requested=True), "cancelled", False, None),
    (Seen(0, finished=DONE, lost=True), "superseded", False, None),
    (Seen(-9, lost=True, failure=SAVE_FAILED), "superseded", False, None),  # another attempt owns the run
    (Seen(-9, failure=SAVE_FAILED, cancel_requested=True), "failed", False, "checkpoint_save_failed"),
    (Seen(0, finished=DONE, failure=SAVE_FAILED), "failed", False, "checkpoint_save_failed"),
]


@pytest.mark.parametrize(("seen", "status", "store", "code"), CASES)
def test_outcome_table(seen: Seen, status: str, store: bool, code: str | None) -> None:
    outcome = decide(seen)
    assert (outcome.status, outcome.store_output) == (status, store)
    assert (outcome.error or {}).get("code") == code


def test_success_carries_the_final_numbers() -> None:
    assert decide(Seen(0, finished=DONE)).final == DONE.final


def test_a_crash_without_a_word_keeps_the_stderr_tail_and_a_reported_error_its_own_traceback() -> None:
    crashed = decide(Seen(139, stderr_tail="Segmentation fault")).error
    assert crashed["traceback"] == "Segmentation fault" and "code 139" in crashed["message"]
    assert decide(Seen(1, error=OOM, stderr_tail="other")).error["traceback"] == "trace"
