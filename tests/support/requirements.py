"""What a test needs from the machine: skipped where it is missing locally, a failure in CI, which must run all."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True under CI (`CI=true bash .ci/run`)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require(condition: bool, why: str) -> None:
    """Go on if condition holds; else skip, or fail under CI=true, where a suite that never ran must not pass.

    why says what is missing and how to install it.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"{why} (CI=true: a missing requirement fails instead of skipping)", pytrace=False)
    pytest.skip(why)
