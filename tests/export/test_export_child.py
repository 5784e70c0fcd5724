"""The export child for real (`python -m worker.export`): a tiny random Llama with SmolLM2's tokenizer (llama.cpp's
converter recognises its pre-tokenizer), a random non-zero LoRA on it, each format written by transformers/PEFT and
llama.cpp's own converters and verified by generation through transformers and llama-cpp-python."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.requirements import require
from worker.export import llama_cpp_tools
from worker.export.inputs import ExportInputs
from worker.planning.reports import Error, Result, parse

PROMPTS = ["What is the capital of France?", "Say hello.", "List three colours.", "Who are you?"]


@pytest.fixture(scope="module")
def tools() -> Path:
    folder = llama_cpp_tools.tools_dir()
    require(not llama_cpp_tools.missing(folder), f"llama.cpp's converters are not in {folder}: "
            "run `python -m worker.export.llama_cpp_tools fetch` (scripts/studio.sh does)")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        require(False, "llama-cpp-python is not installed: pip install '.[train]'")
    return folder


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> tuple[Path, Path]:
    """A 2-layer Llama (hidden 64) with SmolLM2's tokenizer and chat template, and a random LoRA (r 8) on it that
    clearly moves its outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("export")
    base, adapter = root / "base", root / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False, initializer_range=0.2)  # peaked logits: few near-ties
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(adapter)
    return base, adapter


def export(tmp_path: Path, base: Path, adapter: Path, fmt: str, tools: Path | None = None,
           **extra) -> tuple[list, Path]:
    """Run the child; its reports and its out folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs = ExportInputs(format=fmt, base={"name": "tiny", "source": "local", "ref": str(base)},
                          adapter_dir=str(adapter), adapter_sha256="0" * 64, stem="tiny-v1", prompts=PROMPTS,
                          max_new_tokens=16, llama_cpp_dir=str(tools) if tools else None, **extra)
    path = tmp_path / "inputs.json"
    path.write_text(inputs.model_dump_json())
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "worker.export", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    reports = [r for r in (parse(line) for line in done.stdout.splitlines()) if r is not None]
    assert done.returncode == (0 if isinstance(reports[-1], Result) else 1), done.stderr[-2000:]
    return reports, out


def check_files(result: Result, out: Path) -> dict[str, dict]:
    """Every listed file is in out with its size and sha256; the report file is the report."""
    files = {f["name"]: f for f in result.data["files"]}
    assert set(files) == {p.name for p in out.iterdir()}
    for name, f in files.items():
        data = (out / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"])
    assert json.loads((out / "export-report.json").read_text()) == result.data["report"]
    return files


@pytest.mark.slow
def test_a_merged_export_loads_in_transformers_and_answers_as_the_adapter_does(tmp_path, base_and_adapter, tools):
    import torch
    from transformers import AutoModelForCausalLM

    reports, out = export(tmp_path, *base_and_adapter, "merged", tools)
    result = reports[-1]
    assert isinstance(result, Result)
    files = check_files(result, out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(files)
    report = result.data["report"]
    check = report["checks"]["merged"]
    assert check["verified"] and check["top1"] >= 0.9
    assert report["reference"]["base_top1"] < 0.9, "the adapter must move the base, or the check proves nothing"
    assert report["dtype"] == "bfloat16"  # a float32 base is written in bfloat16
    model = AutoModelForCausalLM.from_pretrained(out)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert not any("lora" in name for name, _ in model.named_parameters())
    stages = [r.message for r in reports if r.type == "log"]
    assert stages == ["load the base and the adapter", "reference generations", "merge into 16-bit and save",
                      "verify the merged model"]
    assert [r.step for r in reports if r.type == "metric"] == [1, 2, 3, 4]


@pytest.mark.slow
def test_gguf_exports_are_written_by_llama_cpps_converter_and_verified_in_llama_cpp(tmp_path, base_and_adapter,
                                                                                     tools):
    import gguf

    reports, out = export(tmp_path, *base_and_adapter, "gguf", tools)
    result = reports[-1]
    assert isinstance(result, Result), reports[-1]
    files = check_files(result, out)
    assert set(files) == {"tiny-v1-f16.gguf", "tiny-v1-q8_0.gguf", "export-report.json"}
    checks = result.data["report"]["checks"]
    assert checks["f16"]["verified"] and checks["q8_0"]["verified"]
    assert checks["f16"]["loaded_by"].startswith("llama.cpp")
    assert checks["q8_0"]["tolerance_top1"] < checks["f16"]["tolerance_top1"]
    types = {t.tensor_type.name for t in gguf.GGUFReader(out / "tiny-v1-q8_0.gguf").tensors}
    assert "Q8_0" in types


@pytest.mark.slow
def test_a_gguf_lora_applied_by_llama_cpp_answers_as_the_adapter_does(tmp_path, base_and_adapter, tools):
    import gguf

    reports, out = export(tmp_path, *base_and_adapter, "gguf_lora", tools)
    result = reports[-1]
    assert isinstance(result, Result), reports[-1]
    files = check_files(result, out)
    assert set(files) == {"tiny-f16.gguf", "tiny-v1-lora-f16.gguf", "export-report.json"}
    report = result.data["report"]
    # llama.cpp with the LoRA agrees with the adapter far more than the base alone does: it applied the LoRA.
    assert report["checks"]["lora"]["top1"] >= 0.9 > report["reference"]["base_top1"]
    reader = gguf.GGUFReader(out / "tiny-v1-lora-f16.gguf")
    assert any(t.name.endswith("lora_a") for t in reader.tensors)


@pytest.mark.slow
def test_a_qlora_adapter_is_merged_into_the_16_bit_base_and_the_difference_reported(tmp_path, base_and_adapter,
                                                                                     tools):
    from worker.planning.spec import RunSpec

    spec = RunSpec(method="qlora", model={"base_model": "tiny"}, data={"path": "-"}).model_dump(mode="json")
    reports, out = export(tmp_path, *base_and_adapter, "merged", tools, spec=spec)
    result = reports[-1]
    assert isinstance(result, Result), reports[-1]
    assert "compare with the 4-bit base it was trained on" in [r.message for r in reports if r.type == "log"]
    trained = result.data["report"]["trained_on_4bit"]
    assert trained["quant_type"] == "nf4"
    # The reference is the 16-bit base with the adapter; NF4 rounding of a random base moves some choices.
    assert 0.0 < trained["top1_4bit_vs_16bit"] < 1.0
    assert result.data["report"]["dtype"] == "bfloat16"


@pytest.mark.slow
def test_an_rslora_adapter_becomes_a_gguf_lora_with_the_same_scale(tmp_path, base_and_adapter, tools):
    """llama.cpp scales by alpha / r; rsLoRA by alpha / sqrt(r): the export writes alpha x sqrt(r) so that
    llama.cpp applies the adapter's own scale, and the verification proves it."""
    base, adapter = base_and_adapter
    rs = tmp_path / "rslora"
    rs.mkdir()
    (rs / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    config = json.loads((adapter / "adapter_config.json").read_text())
    (rs / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    reports, _ = export(tmp_path, base, rs, "gguf_lora", tools)
    result = reports[-1]
    assert isinstance(result, Result), reports[-1]
    report = result.data["report"]
    assert report["rslora_alpha_for_llama_cpp"] == pytest.approx(16 * 8 ** 0.5, abs=1e-3)
    assert report["checks"]["lora"]["top1"] >= 0.9 > report["reference"]["base_top1"]
    reports, _ = export(tmp_path / "merged", base, rs, "merged", tools)  # PEFT merges at rsLoRA's scale too
    assert isinstance(reports[-1], Result), reports[-1]
    assert reports[-1].data["report"]["checks"]["merged"]["top1"] >= 0.9


@pytest.mark.slow
def test_a_dora_adapter_merges_and_is_refused_as_a_gguf_lora(tmp_path, base_and_adapter, tools):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base, _ = base_and_adapter
    dora = tmp_path / "dora"
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], use_dora=True,
                                      init_lora_weights=False))
    model.save_pretrained(dora)
    reports, _ = export(tmp_path / "merged", base, dora, "merged", tools)
    assert isinstance(reports[-1], Result), reports[-1]
    assert reports[-1].data["report"]["checks"]["merged"]["verified"]
    reports, _ = export(tmp_path / "lora", base, dora, "gguf_lora", tools)
    refused = reports[-1]
    assert isinstance(refused, Error) and refused.code == "lora_not_convertible"
    assert "DoRA" in refused.message and "Export gguf" in refused.message


def test_missing_converters_fail_the_export_naming_the_fix(tmp_path, base_and_adapter):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    reports, out = export(tmp_path, *base_and_adapter, "gguf", empty)
    error = reports[-1]
    assert isinstance(error, Error) and error.code == "conversion_failed"
    assert "llama_cpp_tools fetch" in error.message


def test_an_export_below_the_tolerance_is_refused_with_its_figures(tmp_path):
    """The judgement alone (pure): 3 of 4 next-token choices as the reference's is 75 %, under a 90 % tolerance."""
    from worker.export.exporter import Exporter, ExportFailed

    inputs = ExportInputs(format="gguf", base={"name": "tiny", "source": "local", "ref": "-"}, adapter_dir="-",
                          adapter_sha256="0" * 64, stem="tiny-v1", prompts=["a", "b"])
    exporter = Exporter(inputs, tmp_path / "out", tmp_path / "scratch", lambda *_: None)
    exporter.reference = [[1, 2], [3, 4]]
    exporter.tokenizer = type("Tokenizer", (), {"decode": staticmethod(lambda ids: " ".join(map(str, ids)))})
    exporter._judge("f16", [[1, 2], [3, 4]], [[1, 2], [3, 4]], quantized=False, loaded_by="test")
    assert exporter.report["checks"]["f16"]["verified"]
    with pytest.raises(ExportFailed) as refused:
        exporter._judge("f16", [[1, 2], [3, 5]], [[1, 2], [3, 5]], quantized=False, loaded_by="test")
    assert refused.value.code == "export_unverified"
    assert "75.0%" in refused.value.message and "not offered" in refused.value.message
    assert exporter.report["checks"]["f16"] == {**exporter.report["checks"]["f16"], "verified": False, "top1": 0.75}
    with pytest.raises(ExportFailed):  # 75 % is under a quantized file's 85 % too
        exporter._judge("q8_0", [[1, 2], [3, 4]], [[1, 2], [3, 5]], quantized=True, loaded_by="test")
