"""Real tokens/s, peak RSS and loss: the copied recipes (A: pad to 512, B: dynamic padding) vs the studio (C).

Run: .venv/bin/python benchmarks/training_throughput.py [--examples 32] [--batch 4] [--accum 2] [--repeats 2]
(32 examples × 2 repeats take ~30+ minutes on 2 shared CPU cores: recipe A in fp32 is the slow one.)
Every (recipe, method) trains in a fresh subprocess, interleaved A/B/C per repeat, on the first N rows of
alpaca_en_demo with the same LoRA settings, order and batch size; medians are printed with the spread.
C runs in the environment a worker gives its trainers (tcmalloc preloaded where installed:
worker.planning.allocator); A and B on the system malloc, as people run them. "C-libc" is C on the system
malloc, to show what the allocator alone is worth.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo import DEMO_MODEL, demo_model  # noqa: E402

MODEL = DEMO_MODEL
DATA = ROOT.parent / "shared/datasets/alpaca_en_demo.json"
MAX_LEN, LR, SEED = 512, 2e-4, 42
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
RECIPES = ("A", "B", "C")


def canonical_rows(dest: Path, n: int) -> Path:
    """The first n Alpaca rows in the studio's canonical (messages) form."""
    from app.core.datasets import inspect_dataset, write_canonical_jsonl

    found = inspect_dataset(DATA, DATA.name)
    write_canonical_jsonl(DATA, found.file_type, found.format, dest.with_suffix(".all"))
    lines = dest.with_suffix(".all").read_text(encoding="utf-8").splitlines()[:n]
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def recipe_dataset(tokenizer, rows: Path, pad_to_max: bool) -> list[dict]:
    """The articles' tokenisation: chat template over prompt+response, labels = ids with padding masked."""
    out = []
    for line in rows.read_text(encoding="utf-8").splitlines():
        text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
        enc = tokenizer(text, truncation=True, max_length=MAX_LEN,
                        padding="max_length" if pad_to_max else False, add_special_tokens=False)
        labels = [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    return out


def recipe_model(method: str):
    """HF model + PEFT as in the QLoRA/LoRA blog posts (NF4, double quant, bf16 compute for QLoRA)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if method == "qlora":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(MODEL, quantization_config=q))
    else:
        model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    config = LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                        target_modules="all-linear")
    return get_peft_model(model, config)


def run_recipe(name: str, method: str, rows: Path, batch: int, accum: int, out: Path) -> dict:
    """Recipe A or B with a plain transformers Trainer; returns real tokens, seconds and losses."""
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    data = recipe_dataset(tokenizer, rows, pad_to_max=name == "A")
    pad = DataCollatorWithPadding(tokenizer)

    def collate(features):  # dynamic padding; labels padded with -100
        width = max(len(f["input_ids"]) for f in features)
        labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in features])
        return pad([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features]) | {"labels": labels}

    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1,
                             gradient_accumulation_steps=accum,
                             learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1,
                             seed=SEED, data_seed=SEED, use_cpu=True, report_to="none", save_strategy="no",
                             disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model=recipe_model(method), args=args, train_dataset=data, data_collator=collate)
    cpu = cpu_seconds()
    runtime = trainer.train().metrics["train_runtime"]
    cpu = cpu_seconds() - cpu
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens": sum(sum(d["attention_mask"]) for d in data), "seconds": runtime, "cpu_s": cpu,
            "losses": losses}


def run_studio(method: str, rows: Path, batch: int, accum: int, out: Path, checkpointing: bool = False) -> dict:
    """Recipe C: the studio's own trainer with its defaults for this device (same objective: train_on all)."""
    from worker.planning.spec import RunSpec
    from worker.trainer.loop import train
    from worker.trainer.sinks import ListSink

    spec = RunSpec.model_validate({
        "method": method, "model": {"base_model": str(MODEL)}, "lora": LORA,
        "data": {"path": str(rows), "max_seq_length": MAX_LEN, "train_on": "all"},
        "training": {"per_device_batch_size": batch, "gradient_accumulation_steps": accum, "learning_rate": LR,
                     "seed": SEED, "gradient_checkpointing": checkpointing}})
    sink = ListSink()
    cpu = cpu_seconds()  # includes loading the model (A and B start after it): C's figure is the pessimistic one
    result = train(spec, out, sink)
    cpu = cpu_seconds() - cpu
    points = sink.metrics()
    return {"tokens": result.tokens_seen, "seconds": points[-1]["elapsed_s"], "cpu_s": cpu,
            "losses": [p["loss"] for p in points if "loss" in p]}


def cpu_seconds() -> float:
    """CPU time of this process (user + system): unlike wall time, barely moved by other processes on the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(name: str, method: str, rows: Path, batch: int, accum: int) -> None:
    """One configuration in this (fresh) process; prints one JSON line. "C+gc": C with gradient checkpointing."""
    from worker.planning.allocator import active_allocator

    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("C"):
            r = run_studio(method, rows, batch, accum, Path(tmp), checkpointing=name == "C+gc")
        else:
            r = run_recipe(name, method, rows, batch, accum, Path(tmp))
    r["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["allocator"] = active_allocator()
    print("RESULT " + json.dumps(r), flush=True)


def measure(name: str, method: str, rows: Path, batch: int, accum: int) -> dict:
    """Run one configuration in a fresh subprocess and parse its result line."""
    from worker.planning.allocator import trainer_env

    cmd = [sys.executable, __file__, "--child", name, method, str(rows), "--batch", str(batch), "--accum", str(accum)]
    env = trainer_env(os.environ) if name in ("C", "C+gc") else dict(os.environ)  # C-libc: the system malloc
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    line = next((s for s in proc.stdout.splitlines() if s.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{name}/{method} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[7:])
    r["tps"] = r["tokens"] / r["seconds"]
    r["tpcs"] = r["tokens"] / r["cpu_s"]
    return r


def table(results: dict[tuple[str, str], list[dict]]) -> str:
    """Medians (min–max) per configuration, then the ratios the issue asks for."""
    fields = ("tps", "tpcs", "peak_mb", "seconds")
    med = {k: {f: statistics.median(r[f] for r in v) for f in fields} for k, v in results.items()}
    lines = [f"{'config':<13}{'tokens/s (min-max)':>24}{'tok/CPU-s':>10}{'peak MB (min-max)':>22}{'real tok':>10}"
             f"{'last loss':>11}{'mean loss':>11}  malloc"]
    for (name, method), runs in results.items():
        tps, mb = [r["tps"] for r in runs], [r["peak_mb"] for r in runs]
        losses = runs[0]["losses"]
        m = med[name, method]
        lines.append(f"{name + '/' + method:<13}{m['tps']:>11.0f} ({min(tps):.0f}-{max(tps):.0f}){'':>3}"
                     f"{m['tpcs']:>10.0f}{m['peak_mb']:>9.0f} ({min(mb):.0f}-{max(mb):.0f}){runs[0]['tokens']:>10}"
                     f"{losses[-1]:>11.4f}{statistics.fmean(losses):>11.4f}  {runs[0]['allocator']}")
    if not all((n, m) in med for n in RECIPES for m in ("lora", "qlora")):
        return "\n".join(lines)  # ratios need every recipe (--only ran a subset)
    for method in ("lora", "qlora"):
        c, a, b = med["C", method], med["A", method], med["B", method]
        lines.append(f"{method}: tokens/s C/A {c['tps'] / a['tps']:.2f}  C/B {c['tps'] / b['tps']:.2f}   "
                     f"tokens/CPU-s C/A {c['tpcs'] / a['tpcs']:.2f}  C/B {c['tpcs'] / b['tpcs']:.2f}   "
                     f"peak MB C/A {c['peak_mb'] / a['peak_mb']:.2f}  C/B {c['peak_mb'] / b['peak_mb']:.2f}")
    for method in ("lora", "qlora"):
        last = {n: statistics.fmean(results[n, method][0]["losses"][-3:]) for n in RECIPES if (n, method) in results}
        lines.append(f"{method}: mean loss of the last 3 steps " + "  ".join(f"{n} {v:.4f}" for n, v in last.items())
                     + f"  (C/B {last['C'] / last['B']:.3f})")
    for method in ("lora", "qlora"):
        if ("C+gc", method) in med:
            g, a, b = med["C+gc", method], med["A", method], med["B", method]
            lines.append(f"{method}: C with gradient checkpointing: tokens/s C+gc/A {g['tps'] / a['tps']:.2f}  "
                         f"C+gc/B {g['tps'] / b['tps']:.2f}   peak MB C+gc/B {g['peak_mb'] / b['peak_mb']:.2f}")
    for method in ("lora", "qlora"):
        if ("C-libc", method) in med:
            g, c, a, b = med["C-libc", method], med["C", method], med["A", method], med["B", method]
            lines.append(f"{method}: C on the system malloc (C-libc): tokens/s C/C-libc {c['tps'] / g['tps']:.2f}  "
                         f"C-libc/A {g['tps'] / a['tps']:.2f}  C-libc/B {g['tps'] / b['tps']:.2f}   peak MB "
                         f"C/C-libc {c['peak_mb'] / g['peak_mb']:.2f}  C-libc/B {g['peak_mb'] / b['peak_mb']:.2f}")
    lines.append(f"C: QLoRA time / LoRA time {med['C', 'qlora']['seconds'] / med['C', 'lora']['seconds']:.2f} (wall), "
                 f"{med['C', 'lora']['tpcs'] / med['C', 'qlora']['tpcs']:.2f} (CPU time)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("RECIPE", "METHOD", "ROWS"))
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="examples per forward pass")
    parser.add_argument("--accum", type=int, default=2, help="forward passes per optimiser step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="ABC", help="which recipes to run, e.g. 'BC'")
    parser.add_argument("--with-checkpointing", action="store_true",
                        help="also run C with gradient checkpointing on (as A and B have it for QLoRA)")
    parser.add_argument("--no-ablation", action="store_true", help="skip C-libc (C on the system malloc)")
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], Path(args.child[2]), args.batch, args.accum)
    demo_model(MODEL)
    rows = canonical_rows(Path(tempfile.mkdtemp()) / "alpaca.jsonl", args.examples)
    results: dict[tuple[str, str], list[dict]] = {}
    names = [n for n in RECIPES if n in args.only] + (["C+gc"] if args.with_checkpointing else []) \
        + ([] if args.no_ablation or "C" not in args.only else ["C-libc"])
    started = time.monotonic()
    for _ in range(args.repeats):
        for method in ("lora", "qlora"):
            for name in names:
                results.setdefault((name, method), []).append(measure(name, method, rows, args.batch, args.accum))
                last = results[name, method][-1]
                print(f"  {name}/{method}: {last['tps']:.0f} tok/s, {last['tpcs']:.0f} tok/CPU-s, "
                      f"{last['peak_mb']:.0f} MB", flush=True)
    print(table(dict(sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])))))
    print(f"({args.examples} examples, batch {args.batch} x {args.accum} accumulation, {args.repeats} repeats, "
          f"{time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
