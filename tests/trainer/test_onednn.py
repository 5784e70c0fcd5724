"""The trainer bounds oneDNN's primitive cache unless the environment already chose a capacity."""

from __future__ import annotations

from worker.trainer.onednn import CAPACITY_ENV, TRAINING_CAPACITY, bound_primitive_cache


def test_the_cache_is_bounded_for_training() -> None:
    env: dict[str, str] = {}
    assert bound_primitive_cache(env) == str(TRAINING_CAPACITY) and env == {CAPACITY_ENV: str(TRAINING_CAPACITY)}


def test_a_capacity_the_environment_chose_is_kept() -> None:
    env = {CAPACITY_ENV: "1024"}
    assert bound_primitive_cache(env) == "1024" and env[CAPACITY_ENV] == "1024"
