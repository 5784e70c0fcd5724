"""Every shipped preset is a valid RunSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.planning.spec import RunSpec

RECIPES = sorted((Path(__file__).resolve().parents[2] / "worker" / "planning" / "recipes").glob("*.yaml"))


def test_the_three_presets_exist() -> None:
    assert {p.stem for p in RECIPES} >= {"quick-qlora", "balanced-lora", "high-quality"}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(recipe: Path) -> None:
    spec = RunSpec.from_yaml(recipe.read_text(encoding="utf-8"))
    assert spec.name == recipe.stem and spec.model.base_model
    assert RunSpec.from_yaml(spec.to_yaml()) == spec
