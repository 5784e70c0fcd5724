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

    def parameters(self) -> list:  # nothing for release_checkpoint_pages to copy
        return []

    def buffers(self) -> list:
        return []


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
    import torch

    # A GPU without bf16 (a T4) holds the frozen base in fp16, what its fp16 autocast reads; the CPU in fp32.
    assert seen["dtype"] == (torch.float16 if device == "cuda" else torch.float32)


def test_bfloat16_compute_is_refused_on_a_gpu_without_it(monkeypatch) -> None:
    import torch

    from worker.trainer.errors import TrainerError

    spec = RunSpec(method="qlora", model={"base_model": "m"}, data={"path": "-"},
                   quantization={"compute_dtype": "bfloat16"})
    monkeypatch.setattr(model_module, "supports_bf16", lambda device: device != "cuda")  # a T4: no bf16
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(TrainerError) as refused:
        model_module.compute_dtype(spec, "cuda")
    assert refused.value.code == "bf16_unsupported" and "Tesla T4" in refused.value.message
    assert "auto or float16" in refused.value.message
    assert model_module.compute_dtype(spec, "cpu") == torch.bfloat16  # the CPU may emulate it
    auto = spec.model_copy(update={"quantization": spec.quantization.model_copy(update={"compute_dtype": "auto"})})
    assert model_module.compute_dtype(auto, "cuda") == torch.float16  # the fp16 recipe of a GPU without bf16
