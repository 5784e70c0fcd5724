"""Every RunSpec field is bounded (numbers finite and capped, texts and lists short), and specs are read as YAML
through safe_yaml, which refuses what could grow (aliases, anchors, tags, deep nesting, size) before building it."""

from __future__ import annotations

import math
import time
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel, ValidationError

from tests.support.spec_bombs import ALIAS_BOMB
from worker.planning import presets, safe_yaml
from worker.planning.safe_yaml import YamlLimits, YamlRefused
from worker.planning.spec import MAX_STEPS, MAX_TARGET_MODULES, MAX_TEXT, RunSpec

BASE = {"model": {"base_model": "m"}, "data": {"dataset_id": 1}}


def _sections() -> list[tuple[str, type[BaseModel]]]:
    out: list[tuple[str, type[BaseModel]]] = [("", RunSpec)]
    for name, info in RunSpec.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.append((name, info.annotation))
    return out


def _fields(kind: type) -> list[tuple[str, str, Any]]:
    """(section, field, FieldInfo) of every spec field whose type (inside Optional) is `kind`."""
    found = []
    for section, model in _sections():
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if get_origin(annotation) in (Union, types.UnionType):
                annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
            if annotation is kind:
                found.append((section, name, info))
    return found


def _with(section: str, field: str, value: Any) -> dict:
    spec = {key: dict(value) for key, value in BASE.items()}
    (spec.setdefault(section, {}) if section else spec)[field] = value
    return spec


def _locs(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_every_number_field_has_an_upper_bound() -> None:
    def capped(info: Any) -> bool:
        return any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in info.metadata)

    numbers = _fields(int) + _fields(float)
    assert len(numbers) > 15
    assert [f"{s}.{n}" for s, n, info in numbers if not capped(info)] == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_no_float_field_takes_a_non_finite_number(value: float) -> None:
    for section, name, _ in _fields(float):
        with pytest.raises(ValidationError) as caught:
            RunSpec.model_validate(_with(section, name, value))
        assert f"{section}.{name}".lstrip(".") in _locs(caught.value)


def test_every_text_field_is_bounded() -> None:
    for section, name, _ in _fields(str):
        with pytest.raises(ValidationError) as caught:
            RunSpec.model_validate(_with(section, name, "x" * (MAX_TEXT + 1)))
        assert f"{section}.{name}".lstrip(".") in _locs(caught.value)


@pytest.mark.parametrize(("field", "value"), [
    ("max_steps", 10**18), ("max_steps", MAX_STEPS + 1), ("seed", 2**32), ("seed", -1), ("seed", 10**30),
    ("logging_steps", 10**12), ("save_steps", 10**12), ("eval_steps", 10**12), ("num_epochs", 1e9),
    ("per_device_batch_size", 10**9), ("gradient_accumulation_steps", 10**9), ("weight_decay", 1e300),
])
def test_training_counts_and_numbers_are_capped(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        RunSpec.model_validate(_with("training", field, value))
    assert _locs(caught.value) == {f"training.{field}"}
    assert str(value) not in str(caught.value) or len(str(value)) < 6  # the input is not repeated back


def test_the_largest_allowed_values_still_validate() -> None:
    spec = RunSpec.model_validate(_with("training", "max_steps", MAX_STEPS))
    assert spec.training.max_steps == MAX_STEPS
    assert RunSpec.model_validate(_with("training", "seed", 2**32 - 1)).training.seed == 2**32 - 1


def test_target_modules_is_a_short_list_of_plain_names() -> None:
    names = [f"layer{i}.q_proj" for i in range(MAX_TARGET_MODULES)]
    assert RunSpec.model_validate(_with("lora", "target_modules", names)).lora.target_modules == names
    for bad in (names + ["o_proj"], ["q_proj", "v_proj; rm -rf"], ["x" * 101], ["q proj"], [".*"]):
        with pytest.raises(ValidationError) as caught:
            RunSpec.model_validate(_with("lora", "target_modules", bad))
        assert _locs(caught.value) == {"lora.target_modules"}, bad


def test_a_huge_target_list_is_refused_before_its_names_are_checked() -> None:
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="at most 64 module names"):
        RunSpec.model_validate(_with("lora", "target_modules", ["q_proj"] * 1_000_000))
    assert time.perf_counter() - started < 1.0


# --- safe_yaml ---------------------------------------------------------------------------------------------------

def _refused(text: str, limits: YamlLimits = YamlLimits()) -> YamlRefused:
    started = time.perf_counter()
    with pytest.raises(YamlRefused) as caught:
        safe_yaml.load(text, limits)
    assert time.perf_counter() - started < 1.0, "refused, but not before the expensive part"
    return caught.value


def test_the_billion_laughs_is_refused_at_its_first_anchor() -> None:
    assert len(ALIAS_BOMB) < 450
    refused = _refused(ALIAS_BOMB)
    assert (refused.code, refused.line, refused.column) == ("yaml_anchor", 1, 4)
    assert "anchors (&a) are not allowed" in str(refused)
    with pytest.raises(YamlRefused):
        RunSpec.from_yaml(ALIAS_BOMB)


@pytest.mark.parametrize(("text", "code", "line"), [
    ("lora:\n  target_modules: *undefined\n", "yaml_alias", 2),
    ("base: &b {r: 8}\nlora:\n  <<: *b\n", "yaml_anchor", 1),
    ("x: !!python/object/apply:os.system ['true']\n", "yaml_tag", 1),
    ("name: !!binary aGVsbG8=\n", "yaml_tag", 1),
    ("- " * 20_000 + "x\n", "yaml_too_deep", 1),
    ("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 300)), "yaml_too_deep", 17),
    ("a:\n" + "".join(f"  - {i}\n" for i in range(6000)), "yaml_too_many_values", 4999),
    ("name: a\n---\nname: b\n", "more_documents", 2),
    ("name: [unclosed\n", "invalid_yaml", 2),
    ("training:\n  seed: " + "9" * 5000 + "\n", "invalid_yaml", None),
    ("{[1]: 2}\n", "invalid_yaml", 1),
])
def test_what_could_grow_or_fail_is_refused_by_line(text: str, code: str, line: int | None) -> None:
    refused = _refused(text)
    assert (refused.code, refused.line) == (code, line), refused
    assert len(str(refused)) < 400


def test_deep_flow_nesting_is_refused_by_the_parser_or_the_scan() -> None:
    # libyaml's scanner stops flow nesting at 1000 levels itself; the pure-Python parser leaves it to the scan.
    refused = _refused("name: " + "[" * 30_000 + "]" * 30_000)
    assert refused.code in ("yaml_too_deep", "invalid_yaml") and refused.line == 1


def test_too_many_bytes_are_refused_unread() -> None:
    refused = _refused("name: " + "x" * (10 << 20))
    assert (refused.code, refused.kind) == ("yaml_too_large", "too_large")
    assert "10.0 MiB" in str(refused) and "64 KiB" in str(refused)
    assert _refused("é" * 40_000).code == "yaml_too_large"  # counted in bytes, not characters


def test_a_file_is_read_no_further_than_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"name: " + b"x" * (1 << 20))
    with pytest.raises(YamlRefused, match="1.0 MiB"):
        safe_yaml.load_file(big, YamlLimits(max_bytes=4096))
    (tmp_path / "bad.yaml").write_bytes(b"name: \xff\n")
    with pytest.raises(YamlRefused, match="not UTF-8"):
        safe_yaml.load_file(tmp_path / "bad.yaml")


def test_ordinary_yaml_reads_as_before() -> None:
    text = ("# a comment\nname: 'quoted'\nmethod: qlora\nmodel: {base_model: m}\ndata:\n  dataset_id: 1\n"
            "lora:\n  target_modules: [q_proj, v_proj]\ntraining:\n  learning_rate: 1.0e-4\n  eval_steps: null\n"
            "  gradient_checkpointing: yes\n  seed: ! 7\n")
    spec = RunSpec.from_yaml(text)
    assert spec.lora.target_modules == ["q_proj", "v_proj"] and spec.training.learning_rate == 1e-4
    assert spec.training.gradient_checkpointing is True and spec.name == "quoted"
    assert safe_yaml.load("") is None and RunSpec.from_yaml(RunSpec.model_validate(BASE).to_yaml())


def test_non_finite_yaml_numbers_reach_the_spec_and_are_refused() -> None:
    for value in (".nan", ".inf", "-.inf", "1.0e+999"):
        with pytest.raises(ValidationError) as caught:
            RunSpec.from_yaml(f"model: {{base_model: m}}\ndata: {{dataset_id: 1}}\nlora: {{alpha: {value}}}\n")
        assert _locs(caught.value) == {"lora.alpha"}


def test_every_preset_reads_through_safe_yaml() -> None:
    for preset in presets.presets().values():
        assert safe_yaml.load_file(presets.RECIPES / f"{preset.key}.yaml") == preset.spec
