"""Where a LoRA base's weights are loaded: on a GPU straight onto it (device_map), never the whole base in host
memory first and then copied; on the CPU in place. (No GPU here: from_pretrained's arguments are what is checked.)"""

from __future__ import annotations

import pytest

from worker.planning.inputs import TrainingInputs
from worker.planning.spec import RunSpec
from worker.trainer import model as model_module


class Loaded:
    def to(self, device: str) -> Loaded:
        return self


@pytest.mark.parametrize(("device", "device_map"), [("cuda", {"": "cuda"}), ("cpu", None)])
def test_a_lora_base_loads_onto_its_device(monkeypatch, tiny_model_dir, device: str, device_map) -> None:
    seen: dict = {}

    def from_pretrained(ref: str, **kwargs):  # noqa: ANN202
        seen.update(kwargs)
        return Loaded()

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", from_pretrained)
    monkeypatch.setattr(model_module, "supports_bf16", lambda device: False)
    spec = RunSpec(method="lora", model={"base_model": str(tiny_model_dir)}, data={"path": "-"})
    model_module._base_model(spec, device, TrainingInputs(model_ref=str(tiny_model_dir), data_path="-"))
    assert seen.get("device_map") == device_map
    assert seen["use_safetensors"] is True
