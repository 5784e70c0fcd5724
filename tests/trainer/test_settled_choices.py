"""The spec's "auto" optimizer and compute dtype are fixed once per run (issue 17, item 3): a later attempt gets the
first one's choices (stored on the run) whatever device it lands on, so its checkpoint's optimizer still matches;
explicit choices are never touched."""

from __future__ import annotations

import pytest

from worker.planning.spec import RunSpec
from worker.trainer.errors import TrainerError
from worker.trainer.model import optimizer_name, settle_choices, supports_bf16


def _spec(**top) -> RunSpec:
    return RunSpec.model_validate({"data": {"dataset_id": 1}, **top})


def test_a_first_attempt_fixes_auto_for_its_device() -> None:
    settled, choices = settle_choices(_spec(method="qlora"), "cpu", {})
    dtype = "bfloat16" if supports_bf16("cpu") else "float32"
    assert choices == {"optimizer": "adamw_torch", "compute_dtype": dtype}
    assert settled.training.optimizer == "adamw_torch" and settled.quantization.compute_dtype == dtype
    assert settle_choices(_spec(), "cpu", {})[1] == {"optimizer": "adamw_torch"}  # LoRA has no compute dtype


def test_a_later_attempt_on_a_gpu_keeps_what_the_first_fixed_on_the_cpu() -> None:
    spec = _spec(method="qlora")
    assert optimizer_name(spec, "cuda") == "paged_adamw_8bit"  # what "auto" alone would pick there
    pinned = {"optimizer": "adamw_torch", "compute_dtype": "float32"}
    settled, choices = settle_choices(spec, "cuda", pinned)
    assert choices == pinned and settled.training.optimizer == "adamw_torch"
    assert settled.quantization.compute_dtype == "float32"
    assert spec.training.optimizer == "auto"  # the spec as given is not changed (spec.yaml keeps it)


def test_explicit_choices_are_kept_and_still_checked_against_the_device() -> None:
    spec = _spec(method="qlora", training={"optimizer": "paged_adamw_8bit"},
                 quantization={"compute_dtype": "float16"})
    settled, choices = settle_choices(spec, "cuda", {"optimizer": "adamw_torch"})
    assert choices == {"optimizer": "paged_adamw_8bit", "compute_dtype": "float16"}
    on_cpu, _ = settle_choices(spec, "cpu", {})
    with pytest.raises(TrainerError, match="needs a CUDA GPU"):  # the trainer's check before loading anything
        optimizer_name(on_cpu, "cpu")
