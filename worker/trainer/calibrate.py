"""This machine's training speed, measured: `python -m worker.trainer.calibrate` trains a small random Llama for a
few steps through the trainer itself (worker.trainer.loop.train), LoRA then QLoRA, and prints one JSON line:
{method: {"flops", "low", "high", "startup_s"}}.

A training worker runs it in a child process at its start (worker/registry.py) and announces the result with its
device; the web's estimate (worker.planning.estimate) then divides these FLOP/s by the run's FLOPs per token. They
are effective FLOP/s: measured tokens/s × flops_per_token of the calibration model, by the same formula, so what
the formula leaves out on this machine (Python per step, 4-bit dequantisation, memory bandwidth, other processes
on the cores) is inside the figure rather than a guess.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worker.planning.estimate import ModelShape, flops_per_token
from worker.planning.reports import Report, Started
from worker.planning.spec import RunSpec
from worker.trainer.sinks import ListSink

# SmolLM2-135M's block (the demo model), two of them, and a smaller vocabulary: the matmuls a CPU run makes, in a
# model that builds, loads and steps in seconds. A GPU gets a 7B-sized block: small matmuls would leave it idle.
SHAPES = {
    "cpu": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 2, "num_attention_heads": 9,
            "num_key_value_heads": 3, "vocab_size": 8192},
    "cuda": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 2, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 32000},
}
BATCH = {"cpu": (4, 128), "cuda": (8, 1024)}  # (examples per step, tokens per example)
WARMUP_STEPS = 2  # the first steps pay one-off costs (allocator warm-up, kernel selection)
BUDGET_S = 90.0  # per method: a machine that slow is measured on the steps it managed


def build_model(folder: Path, device: str) -> ModelShape:
    """A random Llama of the device's calibration shape with a one-word-one-token tokenizer, saved to folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = SHAPES[device]
    vocab = {"<pad>": 0, "<eos>": 1} | {f"w{i}": i for i in range(2, config["vocab_size"])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>", pad_token="<pad>").save_pretrained(folder)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config, pad_token_id=0, eos_token_id=1, bos_token_id=1,
                                         max_position_embeddings=4096, tie_word_embeddings=False))
    model.save_pretrained(folder, safe_serialization=True)
    return ModelShape.from_config(config)


def write_rows(path: Path, device: str, rows: int) -> Path:
    """Text rows longer than the calibration length, so every example is truncated to it (same tokens a step)."""
    vocab, length = SHAPES[device]["vocab_size"], BATCH[device][1]
    with path.open("w") as f:
        for row in range(rows):
            f.write(json.dumps({"text": " ".join(f"w{2 + (row * 7919 + i * 31) % (vocab - 2)}"
                                                 for i in range(length + 8))}) + "\n")
    return path


def calibration_spec(method: str, model: Path, data: Path, device: str, steps: int) -> RunSpec:
    """The run whose steps are timed: all-linear rank 16 (the designer's default), every step logged."""
    batch, length = BATCH[device]
    return RunSpec.model_validate({
        "name": f"calibrate-{method}", "method": method, "model": {"base_model": str(model)},
        "data": {"path": str(data), "max_seq_length": length, "train_on": "all"},
        "lora": {"r": 16, "target_modules": "all-linear"},
        "training": {"max_steps": WARMUP_STEPS + steps, "per_device_batch_size": batch, "logging_steps": 1,
                     "warmup_ratio": 0.0}})


class StartClock(ListSink):
    """A ListSink that notes when training began (the Started report: model loaded, Trainer ready)."""

    def __init__(self) -> None:
        super().__init__()
        self.started_at: float | None = None

    def emit(self, report: Report) -> None:
        if isinstance(report, Started) and self.started_at is None:
            self.started_at = time.monotonic()
        super().emit(report)


def speed(points: list[dict[str, Any]], per_token: float) -> dict[str, float]:
    """Effective FLOP/s of the median step after the warm-up; the fastest and slowest step's time over the median."""
    timed = [p for p in points if p["step"] >= WARMUP_STEPS and "loss" in p]
    rates = [(b["tokens_seen"] - a["tokens_seen"]) / max(b["elapsed_s"] - a["elapsed_s"], 1e-6)
             for a, b in zip(timed, timed[1:], strict=False)]
    if not rates:
        raise RuntimeError("too few steps were timed to calibrate")
    median = statistics.median(rates)
    return {"flops": median * per_token, "low": median / max(rates), "high": median / min(rates)}


def measure(method: str, model: Path, data: Path, shape: ModelShape, device: str, steps: int) -> dict[str, float]:
    """Train the calibration model for `steps` timed steps (within BUDGET_S): its speed, and the seconds from the
    call to its first step (tokenizer, data, loading the model, setting up the Trainer)."""
    from worker.trainer.loop import train

    spec = calibration_spec(method, model, data, device, steps)
    sink, begun = StartClock(), time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        train(spec, Path(out), sink, should_stop=lambda: time.monotonic() - begun > BUDGET_S)
    setup_s = (sink.started_at or begun) - begun
    return speed(sink.metrics(), flops_per_token(spec, shape)) | {"startup_s": setup_s}


def main(argv: list[str] | None = None) -> int:
    """Print {method: speed} for LoRA and QLoRA on this machine's training device as one JSON line."""
    from worker.trainer.__main__ import claim_stdout, die_with_parent

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per method, after the warm-up")
    parser.add_argument("--methods", default="lora,qlora")
    args = parser.parse_args(argv)
    die_with_parent()
    out, begun = claim_stdout(), time.monotonic()
    # Timed: every trainer process pays these imports (torch, transformers, peft) before its first step.
    from worker.trainer.loop import train  # noqa: F401
    from worker.trainer.model import pick_device

    imports_s, device = time.monotonic() - begun, pick_device()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shape = build_model(Path(tmp) / "model", device)
        data = write_rows(Path(tmp) / "rows.jsonl", device, rows=BATCH[device][0] * (WARMUP_STEPS + args.steps + 1))
        for method in args.methods.split(","):
            try:
                measured = measure(method, Path(tmp) / "model", data, shape, device, args.steps)
            except Exception as exc:  # e.g. no bitsandbytes here: the other method's figure still helps
                print(f"calibration of {method} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            result[method] = {k: round(v, 4) for k, v in measured.items()} | {
                "flops": round(measured["flops"]), "startup_s": round(imports_s + measured["startup_s"], 2)}
    out.write(json.dumps(result) + "\n")
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
