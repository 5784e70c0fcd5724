"""Time estimates against real runs, before and after the worker's calibration (worker.trainer.calibrate).

Run: .venv/bin/python benchmarks/estimate_error.py [--model DIR] [--models tiny,smollm2] [--methods lora,qlora]
     [--settings 2x128,4x256,8x512] [--steps 3] [--json OUT]
First it calibrates this machine as a training worker does at its start (worker.registry.calibrate: a child in the
trainers' environment), then trains every grid point in a fresh `python -m worker.trainer` process, as a worker
spawns it, and times it from spawn to exit. Models: the tiny random Llama the tests build, and SmolLM2-135M-Instruct
where its folder exists (--model, else ~/.lorastudio/models/SmolLM2-135M-Instruct, else benchmarks/demo.py's cache).
The estimates come from worker.planning.estimate for the same spec: "before" on this CPU's profile with the built-in
speed, "after" on the profile the worker announces (its measured speed). A ratio is measured / estimated (above 1:
the estimate was optimistic); "in range" says whether the run's time fell inside the calibrated estimate's range.
With the defaults it takes a few minutes on 2 cores (mostly the SmolLM2 QLoRA points).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo import DEMO_MODEL  # noqa: E402
from benchmarks.estimator_accuracy import spec_for, write_rows  # noqa: E402

# Where `lorastudio demo-model` puts it with the default data folder.
SMOLLM2 = Path.home() / ".lorastudio" / "models" / "SmolLM2-135M-Instruct"


def profiles() -> tuple[object, object, dict]:
    """(this CPU's profile as the web has it, the same as a calibrated worker announces it, the calibration)."""
    from worker.planning.device_profiles import cpu_profile, worker_profile
    from worker.registry import calibrate, detect_device

    started = time.monotonic()
    calibration = calibrate()
    print(f"calibrated in {time.monotonic() - started:.0f} s: {json.dumps(calibration)}", flush=True)
    device = detect_device()
    before = dataclasses.replace(cpu_profile(), allocator=device.get("allocator", "system"))
    return before, worker_profile({"hostname": "this worker", **device, "calibration": calibration}), calibration


def models(names: list[str], model: Path | None, tmp: Path) -> dict[str, Path]:
    """The model folders of the grid: the tests' tiny Llama (built here), SmolLM2 where it is found."""
    from tests.support.tiny_model import build_tiny_model

    found: dict[str, Path] = {}
    if "tiny" in names:
        found["tiny"] = build_tiny_model(tmp / "tiny")
    smollm2 = next((p for p in (model, SMOLLM2, DEMO_MODEL) if p and (p / "config.json").is_file()), None)
    if "smollm2" in names and smollm2 is not None:
        found["smollm2"] = smollm2
    elif "smollm2" in names:
        print(f"SmolLM2 not found (--model, {SMOLLM2}, {DEMO_MODEL}): the grid has the tiny model only", flush=True)
    return found


def train(spec: dict, tmp: Path) -> dict:
    """Spawn the trainer as a worker does (its heap allocator included) and time it; its last tokens/s too."""
    from app.core.config import get_settings
    from worker.planning.allocator import trainer_env

    spec_file = tmp / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(spec))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "worker.trainer", str(spec_file), "--out", str(tmp / spec["name"])],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env=trainer_env(os.environ, get_settings().trainer_allocator))
    wall = time.monotonic() - started
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    errors = [r for r in reports if r.get("type") == "error"]
    if proc.returncode != 0 or errors:
        raise RuntimeError(f"{spec['name']} failed: {errors or proc.stderr[-2000:]}")
    metrics = [r for r in reports if r.get("type") == "metric" and "loss" in r]
    return {"wall_s": wall, "tokens_per_second": metrics[-1]["tokens_per_second"] if metrics else None}


def estimates(spec: dict, model: Path, before: object, after: object) -> tuple[object, object]:
    """The estimator's answer for spec on the uncalibrated and on the calibrated profile."""
    from worker.planning.estimate import ModelShape, estimate
    from worker.planning.spec import RunSpec

    shape = ModelShape.from_config(json.loads((model / "config.json").read_text()))
    run = RunSpec.model_validate(spec)
    return estimate(run, shape, before, None), estimate(run, shape, after, None)


def line(row: dict) -> str:
    """One grid point of the table."""
    span = f"{row['low_s']:.0f}-{row['high_s']:.0f} s"
    speeds = f"{row['estimated_tokens_per_second']:.0f}/{row['tokens_per_second'] or 0:.0f}"
    return (f"{row['config']:<26}{row['before_s']:>10.0f}s{row['after_s']:>10.0f}s{span:>15}{row['wall_s']:>9.0f}s"
            f"{row['ratio_before']:>13.2f}{row['ratio_after']:>12.2f}{speeds:>16}")


def summary(rows: list[dict]) -> str:
    """Mean |log2 error| (a factor) before and after, the worst of each, and how many runs fell in range."""
    def factor(key: str) -> tuple[float, float]:
        errors = [abs(math.log2(r[key])) for r in rows]
        return 2 ** (sum(errors) / len(errors)), 2 ** max(errors)

    (mean_b, worst_b), (mean_a, worst_a) = factor("ratio_before"), factor("ratio_after")
    inside = sum(r["in_range"] for r in rows)
    return (f"typical error ×{mean_b:.2f} before calibration, ×{mean_a:.2f} after (worst ×{worst_b:.2f} → "
            f"×{worst_a:.2f}); {inside} of {len(rows)} runs inside the calibrated range")


def main() -> None:
    """Calibrate, run the grid, print estimate vs measurement per point and the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct (or another Llama-style) folder")
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--settings", default="2x128,4x256,8x512", help="BATCHxSEQ,… per grid point")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    settings = [tuple(int(n) for n in s.split("x")) for s in args.settings.split(",")]
    before, after, _ = profiles()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = write_rows(tmp / "rows.jsonl", rows=max(b for b, _ in settings) * args.steps + 8)
        print(f"{'config':<26}{'est before':>11}{'est after':>11}{'range after':>15}{'measured':>10}"
              f"{'ratio before':>13}{'ratio after':>12}{'tok/s est/meas':>16}", flush=True)
        for name, model in models(args.models.split(","), args.model, tmp).items():
            for method in args.methods.split(","):
                for batch, seq in settings:
                    spec = spec_for(model, data, method, seq, batch, args.steps)
                    spec["name"] = f"{name}-{spec['name']}"
                    old, new = estimates(spec, model, before, after)
                    measured = train(spec, tmp)
                    row = {"config": spec["name"], "before_s": old.time_s, "after_s": new.time_s,
                           "low_s": new.time_low_s, "high_s": new.time_high_s, **measured,
                           "ratio_before": measured["wall_s"] / old.time_s,
                           "ratio_after": measured["wall_s"] / new.time_s,
                           "in_range": new.time_low_s <= measured["wall_s"] <= new.time_high_s,
                           "estimated_tokens_per_second": new.tokens_per_second}
                    rows.append(row)
                    print(line(row), flush=True)
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
