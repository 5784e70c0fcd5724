"""One export, stage by stage: the reference (the adapter applied to its base, in float32, as the studio's
generation applies it), the files written, then each file loaded again — by transformers or by llama.cpp — and its
generations on the version's prompts compared with the reference. A file whose agreement is below the tolerance is
not offered: the export fails naming the figures."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.export import agreement, generations, llama_cpp_tools
from worker.export.inputs import ExportFile, ExportInputs, gguf_file_names

# Tolerances (teacher-forced top-1 agreement with the reference). 16-bit files differ from the float32 reference
# only by rounding; Q8_0 by 8-bit blocks of weights, so it gets a few points more room.
QUANTIZED_ALLOWANCE = 0.05


class ExportFailed(Exception):
    """The export cannot be offered: a stable code and the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stages(fmt: str, trained_4bit: bool = False) -> list[str]:
    """The stages an export of fmt goes through, in order (progress is the number done)."""
    head = ["load the base and the adapter", "reference generations"]
    head += ["compare with the 4-bit base it was trained on"] if trained_4bit else []
    return head + {
        "merged": ["merge into 16-bit and save", "verify the merged model"],
        "gguf": ["merge into 16-bit", "convert to GGUF f16", "verify GGUF f16", "convert to GGUF q8_0",
                 "verify GGUF q8_0"],
        "gguf_lora": ["convert the base to GGUF f16", "convert the adapter to GGUF LoRA",
                      "verify the GGUF LoRA on the GGUF base"],
    }[fmt]


def sixteen_bit(model: Any) -> Any:
    """The 16-bit type to write: the base's own where it is 16-bit, else bfloat16 (float32's range)."""
    import torch

    declared = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    declared = getattr(torch, declared) if isinstance(declared, str) else declared
    return declared if declared in (torch.float16, torch.bfloat16) else torch.bfloat16


class Exporter:
    def __init__(self, inputs: ExportInputs, out: Path, scratch: Path, progress: Callable[[int, str], None]) -> None:
        self.inputs, self.out, self.scratch, self.progress = inputs, out, scratch, progress
        self.plan = stages(inputs.format, inputs.trained_4bit)
        self.done = 0
        self.report: dict[str, Any] = {"format": inputs.format, "prompts": len(inputs.prompts),
                                       "max_new_tokens": inputs.max_new_tokens, "min_agreement":
                                       inputs.min_agreement, "timings_s": {}, "checks": {}}
        self.tools = llama_cpp_tools.tools_dir(inputs.llama_cpp_dir)

    def _stage(self, name: str) -> _Timed:
        return _Timed(self, name)

    def run(self) -> tuple[list[ExportFile], dict[str, Any]]:
        import torch
        from peft import PeftModel

        from worker.generation.bases import load_base

        self.out.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        fmt = self.inputs.format
        if fmt == "gguf_lora":
            self._check_lora_convertible()
        with self._stage("load the base and the adapter"):
            base, tokenizer = load_base(self.inputs.base, "cpu", torch.float32)
            dtype = sixteen_bit(base)
            if fmt == "gguf_lora":  # the base as llama.cpp will have it, before PEFT wraps its layers
                base_dir = self._save(base, tokenizer, self.scratch / "base-hf", dtype)
            model = PeftModel.from_pretrained(base, self.inputs.adapter_dir, is_trainable=False).eval()
        with self._stage("reference generations"):
            self.prompts = generations.prompt_ids(tokenizer, self.inputs.prompts)
            self.stops = generations.stop_token_ids(model, tokenizer)
            self.reference = generations.torch_greedy(model, tokenizer, self.prompts, self.inputs.max_new_tokens)
            with model.disable_adapter():  # how far the adapter moves the base: what a check can tell apart
                base_top1 = generations.torch_top1(model, self.prompts, self.reference)
            self.report["reference"] = {
                "tokens": sum(map(len, self.reference)), "dtype": "float32",
                "base_top1": round(agreement.top1_agreement(self.reference, base_top1), 4),
                "texts": [tokenizer.decode(r) for r in self.reference[:4]]}
        self.tokenizer = tokenizer
        if self.inputs.trained_4bit:
            with self._stage("compare with the 4-bit base it was trained on"):
                self._compare_4bit()
        if fmt == "gguf_lora":
            return self._gguf_lora(base_dir)
        with self._stage("merge into 16-bit and save" if fmt == "merged" else "merge into 16-bit"):
            merged = model.merge_and_unload()
            target = self.out if fmt == "merged" else self.scratch / "merged-hf"
            merged_dir = self._save(merged, tokenizer, target, dtype)
            self.report["dtype"] = str(dtype).removeprefix("torch.")
            del model, merged, base
        if fmt == "merged":
            with self._stage("verify the merged model"):
                self._verify_torch("merged", merged_dir)
            return self._files(), self.report
        names = gguf_file_names(self.inputs.stem, self.inputs.base.name)
        for outtype in ("f16", "q8_0"):
            path = self.out / names[outtype]
            with self._stage(f"convert to GGUF {outtype}"):
                llama_cpp_tools.convert_model(self.tools, merged_dir, path, outtype)
            with self._stage(f"verify GGUF {outtype}"):
                self._verify_llama(outtype, path, None, quantized=outtype != "f16")
        return self._files(), self.report

    def _gguf_lora(self, base_dir: Path) -> tuple[list[ExportFile], dict[str, Any]]:
        names = gguf_file_names(self.inputs.stem, self.inputs.base.name)
        base_gguf, lora_gguf = self.out / names["base"], self.out / names["lora"]
        with self._stage("convert the base to GGUF f16"):
            llama_cpp_tools.convert_model(self.tools, base_dir, base_gguf, "f16")
        with self._stage("convert the adapter to GGUF LoRA"):
            llama_cpp_tools.convert_lora(self.tools, self._lora_source(), base_dir, lora_gguf)
        with self._stage("verify the GGUF LoRA on the GGUF base"):
            self._verify_llama("lora", base_gguf, lora_gguf, quantized=False)
        return self._files(), self.report

    def _check_lora_convertible(self) -> None:
        """Refuse at once what llama.cpp's LoRA converter cannot express (it takes lora_A/lora_B tensors and one
        alpha), naming the export that does work: the merged model as GGUF."""
        config = json.loads((Path(self.inputs.adapter_dir) / "adapter_config.json").read_text())
        why = ("DoRA (use_dora)" if config.get("use_dora") else
               "modules_to_save" if config.get("modules_to_save") else
               "a per-layer alpha_pattern" if config.get("alpha_pattern") else
               f"trained biases (bias {config.get('bias')!r})" if config.get("bias", "none") != "none" else None)
        if why:
            raise ExportFailed("lora_not_convertible", f"A GGUF LoRA cannot hold this adapter's {why}: llama.cpp "
                               "applies plain lora_A/lora_B pairs with one alpha. Export gguf (the merged model, "
                               "which applies it exactly) instead.")

    def _lora_source(self) -> Path:
        """The adapter folder the LoRA converter reads. llama.cpp scales a LoRA by alpha / r and its converter
        keeps only lora_alpha, so an rsLoRA adapter (scaled alpha / sqrt(r)) goes with alpha × sqrt(r) in a copy
        of its config: the same scale, which the verification then checks."""
        folder = Path(self.inputs.adapter_dir)
        config = json.loads((folder / "adapter_config.json").read_text())
        if not config.get("use_rslora"):
            return folder
        copy = self.scratch / "adapter-for-llama.cpp"
        copy.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():
            if path.is_file() and path.name != "adapter_config.json":
                (copy / path.name).symlink_to(path.resolve())
        alpha = config["lora_alpha"] * math.sqrt(config["r"])
        (copy / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": alpha, "use_rslora": False}))
        self.report["rslora_alpha_for_llama_cpp"] = round(alpha, 4)
        return copy

    def _compare_4bit(self) -> None:
        """QLoRA trained the adapter on a 4-bit base; every export applies it to the 16-bit base (merging into a
        re-quantized base would add the quantization error twice). Report how often the next-token choices on the
        4-bit base (as trained) match the reference on the 16-bit one: the difference the person should know."""
        from peft import PeftModel

        from worker.planning.inputs import TrainingInputs
        from worker.planning.spec import RunSpec
        from worker.trainer.model import _base_model

        spec = RunSpec.model_validate(self.inputs.spec)
        ref = self.inputs.base
        inputs = TrainingInputs(model_ref=ref.ref, gguf_file=ref.gguf_file, data_path="-")
        quantized = _base_model(spec, "cpu", inputs)  # loads inputs.model_ref, quantized as the spec says
        if len(self.tokenizer) > quantized.get_input_embeddings().weight.shape[0]:
            quantized.resize_token_embeddings(len(self.tokenizer))
        model = PeftModel.from_pretrained(quantized, self.inputs.adapter_dir, is_trainable=False).eval()
        top1 = generations.torch_top1(model, self.prompts, self.reference)
        self.report["trained_on_4bit"] = {
            "quant_type": spec.quantization.quant_type if spec.quantization else None,
            "top1_4bit_vs_16bit": round(agreement.top1_agreement(self.reference, top1), 4)}

    def _save(self, model: Any, tokenizer: Any, folder: Path, dtype: Any) -> Path:
        """The model in dtype (sharded past 2 GB) with its tokenizer, chat template and generation config."""
        folder.mkdir(parents=True, exist_ok=True)
        model.to(dtype).save_pretrained(folder, max_shard_size="2GB")
        model.to(__import__("torch").float32)
        tokenizer.save_pretrained(folder)
        return folder

    def _verify_torch(self, name: str, folder: Path) -> None:
        """The saved folder loaded back by transformers (16-bit weights, computed in float32) against the reference."""
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        greedy = generations.torch_greedy(model, self.tokenizer, self.prompts, self.inputs.max_new_tokens)
        top1 = generations.torch_top1(model, self.prompts, self.reference)
        self._judge(name, greedy, top1, quantized=False, loaded_by="transformers")

    def _verify_llama(self, name: str, model_path: Path, lora_path: Path | None, quantized: bool) -> None:
        """The GGUF file(s) loaded by llama.cpp, fed the same prompt tokens, against the reference."""
        try:
            llama = generations.LlamaCpp(model_path, lora_path,
                                         n_ctx=max(map(len, self.prompts)) + self.inputs.max_new_tokens + 8)
        except ImportError:
            raise ExportFailed("llama_cpp_missing", "llama-cpp-python is not installed on this worker, so a GGUF "
                               "file cannot be verified: install the studio's `train` extra.") from None
        try:
            greedy = llama.greedy(self.prompts, self.inputs.max_new_tokens, self.stops)
            top1 = llama.top1(self.prompts, self.reference)
        finally:
            llama.close()
        self._judge(name, greedy, top1, quantized, loaded_by=f"llama.cpp (llama-cpp-python {_llama_version()})")

    def _judge(self, name: str, greedy: list[list[int]], top1: list[list[int]], quantized: bool,
               loaded_by: str) -> None:
        figures = agreement.greedy_agreement(self.reference, greedy)
        # The reference is greedy: its own top-1 at each position is the token it generated next.
        figures["top1"] = agreement.top1_agreement(self.reference, top1)
        tolerance = self.inputs.min_agreement - (QUANTIZED_ALLOWANCE if quantized else 0.0)
        check = {**{k: round(v, 4) for k, v in figures.items()}, "tolerance_top1": round(max(tolerance, 0.0), 4),
                 "loaded_by": loaded_by, "texts": [self.tokenizer.decode(g) for g in greedy[:4]]}
        check["verified"] = figures["top1"] >= tolerance
        self.report["checks"][name] = check
        if not check["verified"]:
            raise ExportFailed("export_unverified", f"The {name} export does not behave like the adapter on its "
                               f"base: teacher-forced top-1 agreement {figures['top1']:.1%} (tolerance "
                               f"{tolerance:.0%}), identical greedy answers {figures['exact']:.0%} of "
                               f"{len(greedy)} prompts. It is not offered.")

    def _files(self) -> list[ExportFile]:
        """Every file of the out folder (flat), with the report written beside them."""
        (self.out / "export-report.json").write_text(json.dumps(self.report, indent=2, ensure_ascii=False))
        return [ExportFile(name=p.name, size=p.stat().st_size, sha256=sha256_of(p))
                for p in sorted(self.out.iterdir()) if p.is_file()]


class _Timed:
    """A stage: announced, timed into the report, counted done at its end."""

    def __init__(self, exporter: Exporter, name: str) -> None:
        self.exporter, self.name = exporter, name

    def __enter__(self) -> None:
        self.started = time.monotonic()
        self.exporter.progress(self.exporter.done, self.name)

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.exporter.report["timings_s"][self.name] = round(time.monotonic() - self.started, 2)
            self.exporter.done += 1


def _llama_version() -> str:
    import llama_cpp

    return llama_cpp.__version__
