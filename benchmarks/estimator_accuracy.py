"""Estimated vs measured peak memory (and throughput) of short CPU training runs on the demo model.

Run: .venv/bin/python benchmarks/estimator_accuracy.py [--model DIR] [--steps N] [--allocator auto] [--json OUT]
Each grid point (LoRA/QLoRA × two sequence lengths × two batch sizes) trains in a fresh subprocess so its
peak RSS (ru_maxrss) is its own, in the environment a worker gives its trainers (worker.planning.allocator);
the estimate comes from worker.planning.estimate with the CPU profile and the allocator the child ran on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo import DEMO_MODEL, demo_model  # noqa: E402

GRID = [(method, seq, batch) for method in ("lora", "qlora") for seq in (64, 256) for batch in (2, 8)]
TEXT = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
         "in the old town square and every evening the river carries leaves toward the distant sea")


def write_rows(path: Path, rows: int) -> Path:
    """Text rows long enough that every one is truncated to max_seq_length (so each batch is seq × batch)."""
    words_list = TEXT.split()
    with path.open("w") as f:
        for i in range(rows):
            words = [words_list[(i * 7 + j) % len(words_list)] for j in range(1200)]
            f.write(json.dumps({"text": " ".join(words)}) + "\n")
    return path


def spec_for(model: Path, data: Path, method: str, seq: int, batch: int, steps: int) -> dict:
    """The RunSpec (as a dict) of one grid point: all-linear rank 16, adamw_torch, `steps` optimiser steps."""
    return {"name": f"{method}-{seq}x{batch}", "method": method, "model": {"base_model": str(model)},
            "data": {"path": str(data), "max_seq_length": seq, "train_on": "all"},
            "lora": {"r": 16, "target_modules": "all-linear"},
            "training": {"max_steps": steps, "per_device_batch_size": batch, "optimizer": "adamw_torch",
                         "logging_steps": 1}}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_one(spec_json: str) -> None:
    """Child process: train one spec and print {peak_rss_mb, baseline_mb, loaded_mb, tokens_per_second}."""
    import torch  # noqa: F401  (imported first so the baseline includes the libraries every run loads)
    import transformers  # noqa: F401

    from worker.planning.allocator import active_allocator
    from worker.planning.reports import Report, Started
    from worker.planning.spec import RunSpec
    from worker.trainer.loop import train
    from worker.trainer.sinks import ListSink

    baseline = _rss_mb()
    spec = RunSpec.model_validate(json.loads(spec_json))
    sink, loaded = ListSink(), {}
    original = sink.emit

    def emit(report: Report) -> None:
        if isinstance(report, Started):  # on_train_begin: model loaded and wrapped, no step taken yet
            loaded["mb"] = _rss_mb()
        original(report)

    sink.emit = emit  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as out:
        train(spec, Path(out), sink)
    metrics = sink.metrics()
    # The first step pays one-off costs (allocator warm-up); throughput over the later steps is steadier.
    first, last = metrics[0], metrics[-1]
    steady = (last["tokens_seen"] - first["tokens_seen"]) / max(last["elapsed_s"] - first["elapsed_s"], 1e-9)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "baseline_mb": baseline, "loaded_mb": loaded.get("mb"),
                      "allocator": active_allocator(),
                      "tokens_per_second": steady if len(metrics) > 1 else last["tokens_per_second"]}))


def measure(spec: dict, allocator: str) -> dict:
    """Train `spec` in a fresh interpreter (a trainer's environment) and return what it printed."""
    from worker.planning.allocator import trainer_env

    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT, check=False, env=trainer_env(os.environ, allocator))
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['name']} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"wall_s": time.monotonic() - started}


def estimate_for(spec: dict, model: Path, allocator: str) -> object:
    """The estimator's answer for `spec` on this machine's CPU profile, with the allocator the run had."""
    from worker.planning.device_profiles import cpu_profile
    from worker.planning.estimate import ModelShape, estimate
    from worker.planning.spec import RunSpec

    shape = ModelShape.from_config(json.loads((model / "config.json").read_text()))
    device = dataclasses.replace(cpu_profile(), allocator=allocator)
    return estimate(RunSpec.model_validate(spec), shape, device, dataset_tokens=None)


def main() -> None:
    """Run the grid and print estimate vs measurement for each point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--allocator", default="auto", help="the trainers' heap allocator: auto, tcmalloc, "
                        "jemalloc or system (worker.planning.allocator)")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    args = parser.parse_args()
    if args.one:
        return run_one(args.one)
    model = demo_model(args.model)
    rows, errors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_rows(Path(tmp) / "rows.jsonl", rows=8 * args.steps + 8)
        print(f"{'config':<16}{'est GB':>8}{'meas GB':>9}{'err %':>7}{'est tok/s':>11}{'meas tok/s':>11}{'wall s':>8}")
        for method, seq, batch in GRID:
            spec = spec_for(model, data, method, seq, batch, args.steps)
            measured = measure(spec, args.allocator)
            est = estimate_for(spec, model, measured["allocator"])
            meas_gb = measured["peak_rss_mb"] / 1024
            err = 100 * (est.peak_memory_gb - meas_gb) / meas_gb
            errors.append(abs(err))
            rows.append({"config": spec["name"], "estimate_gb": est.peak_memory_gb, **measured})
            print(f"{spec['name']:<16}{est.peak_memory_gb:>8.2f}{meas_gb:>9.2f}{err:>+7.1f}"
                  f"{est.tokens_per_second:>11.0f}{measured['tokens_per_second']:>11.0f}{measured['wall_s']:>8.0f}",
                  flush=True)
    print(f"mean |error| {sum(errors) / len(errors):.1f} %, worst {max(errors):.1f} % (goal ±25 %), "
          f"trainers on {measured['allocator']} malloc")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
