"""A plan's length against its dataset: optimizer steps, the designer's warning, presets fitted to small data."""

from __future__ import annotations

import pytest

from worker.planning import presets, sizing
from worker.planning.spec import LoraSpec, RunSpec


def _spec(**training: object) -> RunSpec:
    return RunSpec.model_validate({"data": {"path": "x", "eval_fraction": 0.05}, "training": training})


def _preset(key: str) -> RunSpec:
    spec = presets.find(key).spec
    return RunSpec.model_validate({**spec, "data": {**spec["data"], "path": "x"}})


def test_the_documented_first_run_is_22_steps_and_is_warned_about() -> None:
    # identity.json has 91 rows; quick-qlora as it shipped: batch 4, 1 epoch, 5 % held out → 87 rows, 22 steps.
    spec = _spec(per_device_batch_size=4, num_epochs=1, learning_rate=2e-4)
    assert sizing.plan(spec, 91).steps == 22
    warning = sizing.plan_warning(spec, 91)
    assert warning is not None and warning.startswith("22 optimizer steps at lr 2e-4 on 91 rows: expect little change")


def test_a_long_enough_plan_gets_no_warning() -> None:
    assert sizing.plan_warning(_spec(per_device_batch_size=4, num_epochs=5, learning_rate=1e-3), 91) is None
    assert sizing.plan_warning(_spec(max_steps=500, learning_rate=2e-4), 91) is None


def test_eval_count_matches_the_trainers_split() -> None:
    from worker.trainer.data import split

    for rows, fraction in [(91, 0.05), (2, 0.4), (1, 0.1), (1000, 0.1), (10, 0.0)]:
        train, held = split(list(range(rows)), fraction, seed=1)  # type: ignore[arg-type]
        assert sizing.eval_count(rows, fraction) == len(held)


@pytest.mark.parametrize("key", sorted(presets.presets()))
def test_every_preset_fitted_to_a_small_dataset_plans_enough_learning(key: str) -> None:
    fitted, changes = sizing.fit_to_dataset(_preset(key), 91)
    plan = sizing.plan(fitted, 91)
    assert changes
    assert plan.steps >= sizing.MIN_STEPS and plan.epochs <= sizing.MAX_EPOCHS
    assert plan.budget >= sizing.GOOD_BUDGET
    assert sizing.plan_warning(fitted, 91) is None


def test_a_large_dataset_keeps_the_presets_own_settings() -> None:
    spec = _preset("quick-qlora")
    assert sizing.fit_to_dataset(spec, 50_000) == (spec, [])


def test_max_steps_is_the_users_word() -> None:
    spec = _spec(max_steps=10)
    assert sizing.fit_to_dataset(spec, 91) == (spec, [])


def test_stronger_widens_a_small_adapter_then_trains_longer_and_faster() -> None:
    small = _spec(per_device_batch_size=4, num_epochs=1, learning_rate=2e-4).model_copy(
        update={"lora": LoraSpec(r=8, alpha=16, target_modules="attention")})
    stronger, changes = sizing.stronger(small, 91)
    assert stronger.lora.target_modules == "all-linear" and stronger.lora.r == 16
    assert "lora.target_modules all-linear" in changes
    fitted, _ = sizing.fit_to_dataset(_preset("quick-qlora"), 91)  # already wide and fitted
    again, more = sizing.stronger(fitted, 91)
    assert more and sizing.plan(again, 91).budget > sizing.plan(fitted, 91).budget
