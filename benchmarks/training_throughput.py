"""Real tokens/s, MFU, peak RSS and loss: the studio's trainer (C) against the strongest recipes a competent user
would copy (benchmarks/throughput_baselines.py: P, HF Trainer + PEFT in bf16 with padding-free batches; T, TRL's
SFTTrainer with packing in bf16) and the seed recipe (A, fp32 padded to the maximum length), in the same run.

Run (nothing else on the cores; T needs trl: `pip install '.[bench]'`, else it is skipped and said so):
    .venv/bin/python benchmarks/training_throughput.py [--examples 80] [--workloads qv8,all16] [--only ABPTC]
Workloads (issue 18): qv8 = r 8 on q/v, batch 2 x 4; all16 = r 16 on every linear, batch 4 x 2; each with LoRA and
QLoRA NF4, max length 512, the first N alpaca_en_demo rows (80: 10 optimizer steps for the recipes without
packing), the demo model (SmolLM2-135M-Instruct). About 20-30 minutes for both workloads on 2 cores.

Every (recipe, method) trains in a fresh subprocess; the studio's in the environment a worker gives its trainers
(tcmalloc preloaded where installed), the recipes on the system malloc, as people run them ("C-libc",
--allocator-ablation, is the studio's trainer on the system malloc; --lever-ablation adds the studio's trainer with
one lever off: "C-unfused", PEFT's own LoRA forward instead of worker.trainer.lora_fusion; "C-sdpa", SDPA with
transformers' block mask instead of worker.trainer.document_attention; "C-dnncache", oneDNN's default primitive
cache instead of worker.trainer.onednn's bound; "C-unstacked", the frozen q/k/v and gate/up weights multiplied one by
one instead of worker.trainer.stacked_projections; "C-opbyop", transformers' SiLU·up and RMS norms instead of
worker.trainer.lean_blocks). This CPU's fp32 matmul peak, and its bf16 peak where it
multiplies bf16 natively, are measured first, in this process; MFU is 4N FLOPs per real token over the peak of the
dtype the recipe's matmuls run in (benchmarks/matmul_peak.py): bf16 for P, T and C where bf16 is native, else
fp32 (throughput_baselines.half_precision: emulated bf16 is never run, nor its peak measured, which would take
minutes per matmul). The targets of issue 18 are printed as met or not, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo import DEMO_MODEL, demo_model  # noqa: E402
from benchmarks.matmul_peak import matmul_peak_gflops, mfu  # noqa: E402
from benchmarks.throughput_baselines import (  # noqa: E402
    BASELINES,
    LR,
    SEED,
    cpu_seconds,
    half_precision,
    run_baseline,
    runs_in_bf16,
)

MODEL = DEMO_MODEL
DATA = ROOT.parent / "shared/datasets/alpaca_en_demo.json"
MAX_LEN = 512
WORKLOADS: dict[str, dict[str, Any]] = {
    "qv8": {"lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
            "batch": 2, "accum": 4},
    "all16": {"lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
              "batch": 4, "accum": 2},
}
METHODS = ("lora", "qlora")
# Issue 18's targets for the studio (C) against the best baseline.
SPEEDUP_GOAL, MFU_GOAL, MEMORY_GOAL, LOSS_GOAL = 1.5, 0.55, 0.6, 0.02
# The studio's trainer with one lever of issue 18 switched off (--lever-ablation).
LEVER_ABLATIONS = ("C-unfused", "C-sdpa", "C-dnncache", "C-unstacked", "C-opbyop")


def canonical_rows(dest: Path, n: int) -> Path:
    """The first n Alpaca rows in the studio's canonical (messages) form."""
    from app.core.datasets import inspect_dataset, write_canonical_jsonl

    found = inspect_dataset(DATA, DATA.name)
    write_canonical_jsonl(DATA, found.file_type, found.format, dest.with_suffix(".all"))
    lines = dest.with_suffix(".all").read_text(encoding="utf-8").splitlines()[:n]
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def run_studio(method: str, rows: Path, workload: dict[str, Any], out: Path) -> dict[str, Any]:
    """Recipe C: the studio's own trainer with its defaults for this device (same objective: train_on all)."""
    from worker.planning.spec import RunSpec
    from worker.trainer.loop import train
    from worker.trainer.sinks import ListSink

    spec = RunSpec.model_validate({
        "method": method, "model": {"base_model": str(MODEL)}, "lora": workload["lora"],
        "data": {"path": str(rows), "max_seq_length": MAX_LEN, "train_on": "all"},
        "training": {"per_device_batch_size": workload["batch"], "gradient_accumulation_steps": workload["accum"],
                     "learning_rate": LR, "seed": SEED}})
    sink = ListSink()
    cpu = cpu_seconds()  # includes loading the model (the recipes start after it): C's figure is the pessimistic one
    result = train(spec, out, sink)
    cpu = cpu_seconds() - cpu
    points = sink.metrics()
    return {"tokens": result.tokens_seen, "seconds": points[-1]["elapsed_s"], "cpu_s": cpu,
            "losses": [p["loss"] for p in points if "loss" in p]}


def switch_off_lever(name: str) -> None:
    """For a lever ablation (LEVER_ABLATIONS), the studio's trainer in this process without that lever; the
    baselines' processes never import the trainer."""
    import worker.trainer.loop
    import worker.trainer.model

    if name == "C-unfused":  # PEFT's own LoRA forward
        worker.trainer.model.fuse_lora_forward = lambda model: 0
    elif name == "C-sdpa":  # SDPA with transformers' block mask for packed rows
        worker.trainer.model.use_document_attention = lambda model: None
    elif name == "C-dnncache":  # oneDNN's default primitive cache (1,024 primitives)
        worker.trainer.loop.bound_primitive_cache = lambda: ""
    elif name == "C-unstacked":  # q/k/v and gate/up frozen weights multiplied one by one
        worker.trainer.model.stack_frozen_projections = lambda model: 0
    elif name == "C-opbyop":  # transformers' own SiLU·up and RMS norms, operation by operation
        worker.trainer.model.use_lean_blocks = lambda model: 0


def child(name: str, method: str, rows: Path, workload_name: str) -> None:
    """One configuration in this (fresh) process; prints one RESULT line."""
    from worker.planning.allocator import active_allocator

    workload = WORKLOADS[workload_name]
    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("C"):
            switch_off_lever(name)
            r = run_studio(method, rows, workload, Path(tmp))
        else:
            r = run_baseline(name, method, MODEL, rows, workload["lora"], MAX_LEN, workload["batch"],
                             workload["accum"], Path(tmp))
    r["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["allocator"] = active_allocator()
    print("RESULT " + json.dumps(r), flush=True)


def measure(name: str, method: str, rows: Path, workload: str) -> dict[str, Any] | str:
    """Run one configuration in a fresh subprocess: its result, or why it could not run."""
    from worker.planning.allocator import trainer_env

    cmd = [sys.executable, __file__, "--child", name, method, str(rows), "--workloads", workload]
    env = trainer_env(os.environ) if name in ("C", *LEVER_ABLATIONS) else dict(os.environ)  # C-libc: system malloc
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    line = next((s for s in proc.stdout.splitlines() if s.startswith("RESULT ")), None)
    if line is None:
        if name == "T" and "No module named 'trl'" in proc.stderr:
            return "skipped: trl is not installed (pip install '.[bench]')"
        raise SystemExit(f"{name}/{method}/{workload} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[7:])
    r["tps"], r["tpcs"] = r["tokens"] / r["seconds"], r["tokens"] / r["cpu_s"]
    return r


def base_parameters() -> int:
    """N of the base model (shared embeddings counted once), from its config on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(MODEL))
    return sum(p.numel() for p in model.parameters())


SHORT = {"bfloat16": "bf16", "float32": "fp32"}


def matmul_dtype(name: str) -> str:
    """The dtype recipe `name` multiplies in on this CPU (its MFU is over that dtype's peak)."""
    studio = name.startswith("C")  # the studio's trainer: bf16 autocast where bf16 is native
    return "bfloat16" if (half_precision() if studio else runs_in_bf16(name)) else "float32"


def measured_peaks() -> dict[str, float]:
    """GFLOP/s of fp32 matmuls, and of bf16 ones where this CPU has them natively."""
    dtypes = ("bfloat16", "float32") if half_precision() else ("float32",)
    return {dtype: matmul_peak_gflops(dtype) for dtype in dtypes}


def curve_gap(a: list[float], b: list[float]) -> float | None:
    """The largest relative gap between two loss curves of the same steps (None when their steps differ)."""
    if len(a) != len(b) or not a:
        return None
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True) if y)


def report(results: dict[tuple[str, str, str], dict[str, Any] | str], peaks: dict[str, float], params: int) -> str:
    """One table per workload and method, then the studio against the best baseline and issue 18's targets."""
    lines = []
    for workload in dict.fromkeys(w for w, _, _ in results):
        for method in METHODS:
            rows = {n: r for (w, m, n), r in results.items() if (w, m) == (workload, method)}
            if not rows:
                continue
            lines.append(f"\n{workload}/{method}")
            lines.append(f"  {'recipe':<8}{'tokens/s':>10}{'tok/CPU-s':>11}{'MFU':>7}{'dtype':>6}"
                         f"{'peak MB':>9}{'real tok':>10}{'steps':>7}{'mean loss':>11}{'last-3':>9}  malloc")
            for name, r in rows.items():
                if isinstance(r, str):
                    lines.append(f"  {name:<8}{r}")
                    continue
                losses = r["losses"]
                lines.append(f"  {name:<8}{r['tps']:>10.0f}{r['tpcs']:>11.0f}"
                             f"{mfu(r['tps'], params, peaks[matmul_dtype(name)]):>7.1%}"
                             f"{SHORT[matmul_dtype(name)]:>6}{r['peak_mb']:>9.0f}{r['tokens']:>10}"
                             f"{len(losses):>7}{statistics.fmean(losses):>11.4f}{statistics.fmean(losses[-3:]):>9.4f}"
                             f"  {r['allocator']}")
            lines.extend(verdict(rows, peaks, params))
    return "\n".join(lines)


def verdict(rows: dict[str, dict[str, Any] | str], peaks: dict[str, float], params: int) -> list[str]:
    """C against the best baseline (the fastest of those that ran) on each of issue 18's targets."""
    ran = {n: r for n, r in rows.items() if isinstance(r, dict)}
    baselines = {n: r for n, r in ran.items() if n in BASELINES}
    if "C" not in ran or not baselines:
        return []
    c = ran["C"]
    best_name, best = max(baselines.items(), key=lambda kv: kv[1]["tps"])
    speedup, memory = c["tps"] / best["tps"], c["peak_mb"] / best["peak_mb"]
    least_memory = min(r["peak_mb"] for r in baselines.values())
    c_dtype = matmul_dtype("C")
    c_mfu = mfu(c["tps"], params, peaks[c_dtype])
    out = [f"  C vs best baseline {best_name}: tokens/s {speedup:.2f}x (goal >= {SPEEDUP_GOAL}x: "
           f"{_met(speedup >= SPEEDUP_GOAL)}); MFU {c_mfu:.1%} of the {c_dtype} peak (goal >= {MFU_GOAL:.0%}: "
           f"{_met(c_mfu >= MFU_GOAL)}); peak memory {memory:.2f}x {best_name}'s, "
           f"{c['peak_mb'] / least_memory:.2f}x the least of the baselines' (goal <= {MEMORY_GOAL}x: "
           f"{_met(c['peak_mb'] <= MEMORY_GOAL * least_memory)})"]
    c_mean = statistics.fmean(c["losses"])
    for name, r in baselines.items():
        gap, mean_gap = curve_gap(c["losses"], r["losses"]), abs(c_mean / statistics.fmean(r["losses"]) - 1)
        same = f"largest per-step gap {gap:.2%}" if gap is not None else "steps differ (other batches per step)"
        out.append(f"  loss C vs {name}: mean over the run {mean_gap:.2%} apart; {same}"
                   + (f" (goal <= {LOSS_GOAL:.0%}: {_met(gap <= LOSS_GOAL)})" if gap is not None else ""))
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("RECIPE", "METHOD", "ROWS"))
    parser.add_argument("--examples", type=int, default=80)
    parser.add_argument("--workloads", default="qv8,all16", help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--only", default="APTC", help="which recipes to run, of A, B, P, T and C")
    parser.add_argument("--allocator-ablation", action="store_true",
                        help="also run C-libc: the studio's trainer on the system malloc")
    parser.add_argument("--lever-ablation", action="store_true",
                        help="also run C-unfused (PEFT's LoRA forward), C-sdpa (SDPA with a block mask) and "
                             "C-dnncache (oneDNN's default primitive cache)")
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], Path(args.child[2]), args.workloads)
    demo_model(MODEL)
    load = os.getloadavg()
    peaks = measured_peaks()
    params = base_parameters()
    bf16 = f"bf16 {peaks['bfloat16']:.0f} GFLOP/s" if "bfloat16" in peaks else "bf16 not native here (not run)"
    print(f"matmul peak on {os.cpu_count()} cores: {bf16}, fp32 "
          f"{peaks['float32']:.0f} GFLOP/s; base N = {params / 1e6:.1f} M; load average before: "
          + " ".join(f"{x:.2f}" for x in load), flush=True)
    rows = canonical_rows(Path(tempfile.mkdtemp()) / "alpaca.jsonl", args.examples)
    names = ([n for n in (*BASELINES, "C") if n in args.only] + (["C-libc"] if args.allocator_ablation else [])
             + (list(LEVER_ABLATIONS) if args.lever_ablation else []))
    results: dict[tuple[str, str, str], dict[str, Any] | str] = {}
    started = time.monotonic()
    for workload in args.workloads.split(","):
        for method in args.methods.split(","):
            for name in names:
                r = results[workload, method, name] = measure(name, method, rows, workload)
                print(f"  {workload}/{method}/{name}: " + (r if isinstance(r, str) else
                      f"{r['tps']:.0f} tok/s, {r['peak_mb']:.0f} MB, {len(r['losses'])} steps"), flush=True)
    print(report(results, peaks, params))
    print(f"({args.examples} examples, max length {MAX_LEN}, {time.monotonic() - started:.0f} s; load average after: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + ")")


if __name__ == "__main__":
    main()
