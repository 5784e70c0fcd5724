"""The agreement figures of an export's verification (pure)."""

from __future__ import annotations

import pytest

from worker.export.agreement import common_prefix, greedy_agreement, top1_agreement


def test_greedy_agreement_counts_identical_answers_and_the_shared_prefix():
    figures = greedy_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 9], [5, 6]])
    assert figures == {"exact": 0.5, "prefix": (2 / 4 + 2 / 2) / 2}
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_top1_agreement_is_over_every_position():
    assert top1_agreement([[1, 2, 3], [4]], [[1, 0, 3], [4]]) == 0.75


def test_mismatched_sides_are_refused():
    with pytest.raises(ValueError):
        greedy_agreement([[1]], [])
    with pytest.raises(ValueError):
        top1_agreement([[]], [[]])
