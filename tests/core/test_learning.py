"""The under-training signal: losses that barely moved, read from a finished run's metric points."""

from __future__ import annotations

from app.core.models import RunStatus
from app.core.repositories import runs as runs_repo
from app.core.services import learning
from app.core.services.runs import record_metrics
from tests.support.rows import insert_run
from worker.planning.reports import Metric

SPEC = {"data": {"path": "x", "eval_fraction": 0.05},
        "training": {"per_device_batch_size": 4, "num_epochs": 1, "learning_rate": 2e-4}}


def test_judge_flags_a_loss_that_barely_moved_and_a_flat_eval() -> None:
    # The run: 3.11 → 2.99 over 22 steps.
    reasons = learning.judge([3.11, 3.05, 3.02, 2.99], [3.10, 3.10])
    assert len(reasons) == 2 and "3.11 → 3.02" in reasons[0] and "flat" in reasons[1]


def test_judge_accepts_a_loss_that_fell() -> None:
    assert learning.judge([2.2, 1.5, 0.9, 0.4], [1.15, 0.65, 0.66]) == []


def test_judge_needs_two_points_to_tell() -> None:
    assert learning.judge([3.0], [3.0]) == []
    assert learning.judge([], []) == []


def test_verdict_of_a_run_reads_its_points_and_proposes_stronger_settings(session) -> None:
    run_id = insert_run(session, status=RunStatus.succeeded, spec=SPEC)
    record_metrics(session, run_id, [Metric(step=5, loss=3.11), Metric(step=10, loss=3.04), Metric(step=20, loss=2.99),
                                     Metric(step=22, eval_loss=3.10)])
    run = runs_repo.get(session, run_id)
    verdict = learning.verdict(session, run, rows=91)
    assert verdict is not None
    assert verdict.plan == "22 optimizer steps at lr 2e-4 on 91 rows"
    assert verdict.changes and verdict.stronger.training.num_epochs > 1


def test_no_verdict_while_running_or_after_learning(session) -> None:
    run_id = insert_run(session, status=RunStatus.running, spec=SPEC)
    record_metrics(session, run_id, [Metric(step=5, loss=3.11), Metric(step=10, loss=3.10)])
    assert learning.verdict(session, runs_repo.get(session, run_id), rows=91) is None
    done = insert_run(session, status=RunStatus.succeeded, spec=SPEC)
    record_metrics(session, done, [Metric(step=5, loss=3.0), Metric(step=10, loss=1.0)])
    assert learning.verdict(session, runs_repo.get(session, done), rows=91) is None
