"""Short jobs go to a queue of their own, named beside the training queue; everything else is training."""

from __future__ import annotations

from app.core.config import Settings
from app.core.jobs import SHORT_TASKS, queue_for


def test_the_doctor_goes_to_the_short_queue_and_runs_to_training() -> None:
    settings = Settings(queue="training")
    assert "datasets.analyze" in SHORT_TASKS
    assert queue_for(settings, "datasets.analyze") == "short"
    assert queue_for(settings, "runs.execute") == "training"


def test_the_short_queue_is_derived_from_the_training_queue_unless_set() -> None:
    assert Settings(queue="training").resolved_short_queue == "short"
    assert Settings(queue="training.gpu24").resolved_short_queue == "short"
    assert Settings(queue="test-1a2b").resolved_short_queue == "test-1a2b.short"  # a test session's stay apart
    assert Settings(queue="test-1a2b", short_queue="quick").resolved_short_queue == "quick"
    # Derived, not stored: a copy with another training queue (a test fleet's) gets its own short queue too.
    assert Settings(queue="a").model_copy(update={"queue": "b"}).resolved_short_queue == "b.short"
