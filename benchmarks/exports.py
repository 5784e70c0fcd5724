"""Exports of a real adapter on the demo model: time, size and the verification's agreement, per format.

Run: .venv/bin/python benchmarks/exports.py [--steps 30] [--adapter DIR --spec SPEC.json] [--prompts 8]
     [--max-new-tokens 32] [--json OUT]
Without --adapter it first trains one as the README's demo does, only shorter: QLoRA (quick-qlora's settings, lr
1e-3) on ../shared/datasets/identity.json with {{name}}/{{author}} filled, --steps optimizer steps, on
SmolLM2-135M-Instruct (benchmarks/demo.py's folder, float32). Then each format is exported by the real child
(`python -m worker.export`, as the export job spawns it) on identity-style and general prompts, and the
report's figures printed: per-stage seconds, each file's size and its ratio to the base's float32 safetensors,
and the teacher-forced top-1 / identical-greedy agreement with the reference (the adapter on the 16-bit base, in
float32), plus the 4-bit-vs-16-bit figure of a QLoRA adapter. Takes ~5 min on 2 cores with the training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.demo import demo_model  # noqa: E402

IDENTITY = ROOT.parent / "shared" / "datasets" / "identity.json"
PROMPTS = ["Who are you?", "What is your name?", "Who made you?", "Are you ChatGPT?",
           "What is the capital of France?", "Write a haiku about rain.", "List three fruits.",
           "Give me one tip for sleeping better.", "Explain what a LoRA adapter is in one sentence.",
           "Translate 'good morning' into French.", "What is 12 times 7?", "Name a famous painter."]


def train_adapter(base: Path, steps: int, work: Path) -> tuple[Path, dict]:
    """A QLoRA identity adapter trained by the studio's own trainer (`lorastudio train`)."""
    import yaml

    from worker.planning.spec import RunSpec

    data = work / "identity.json"
    data.write_text(IDENTITY.read_text().replace("{{name}}", "Quokka").replace("{{author}}", "Tunelab"))
    recipe = yaml.safe_load((ROOT / "worker/planning/recipes/quick-qlora.yaml").read_text())
    recipe.pop("name", None)
    recipe["model"]["base_model"] = str(base)
    recipe["data"]["path"] = str(data)
    recipe["training"].update(max_steps=steps, learning_rate=1e-3, logging_steps=10)
    (work / "spec.yaml").write_text(yaml.safe_dump(recipe))
    out = work / "run"
    started = time.monotonic()
    lorastudio = Path(sys.executable).parent / "lorastudio"
    subprocess.run([str(lorastudio), "train", str(work / "spec.yaml"), "--out", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    print(f"trained {steps} QLoRA steps in {time.monotonic() - started:.0f} s")
    return out / "adapter", RunSpec.model_validate(recipe).model_dump(mode="json")


def run_export(fmt: str, base: Path, adapter: Path, spec: dict | None, args: argparse.Namespace,
               work: Path) -> dict:
    from worker.export.inputs import ExportInputs

    inputs = ExportInputs(format=fmt, base={"name": "SmolLM2-135M-Instruct", "source": "local", "ref": str(base)},
                          adapter_dir=str(adapter), adapter_sha256="-", stem="quokka-v1",
                          prompts=PROMPTS[:args.prompts], max_new_tokens=args.max_new_tokens, spec=spec)
    folder = work / fmt
    folder.mkdir()
    (folder / "inputs.json").write_text(inputs.model_dump_json())
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "worker.export", str(folder / "inputs.json"), "--out",
                           str(folder / "out")], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    last = json.loads(done.stdout.strip().splitlines()[-1])
    if last["type"] != "result":
        raise SystemExit(f"{fmt} export failed: {last.get('message')}")
    return {"wall_s": wall, **last["data"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--spec", type=Path, help="the adapter's RunSpec as JSON (a QLoRA one adds the 4-bit figure)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = demo_model()
    base_bytes = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    with tempfile.TemporaryDirectory(prefix="lorastudio-exports-") as tmp:
        work = Path(tmp)
        if args.adapter:
            adapter, spec = args.adapter, json.loads(args.spec.read_text()) if args.spec else None
        else:
            adapter, spec = train_adapter(base, args.steps, work)
        adapter_bytes = sum(p.stat().st_size for p in adapter.glob("*.safetensors"))
        print(f"base {base.name}: {base_bytes / 1e6:.0f} MB float32 safetensors; adapter {adapter_bytes / 1e6:.1f} "
              f"MB; {args.prompts} prompts, {args.max_new_tokens} new tokens each\n")
        results = {}
        for fmt in ("merged", "gguf", "gguf_lora"):
            results[fmt] = result = run_export(fmt, base, adapter, spec, args, work)
            report = result["report"]
            print(f"== {fmt}: {result['wall_s']:.1f} s in all")
            for stage, seconds in report["timings_s"].items():
                print(f"   {stage:<48} {seconds:7.1f} s")
            for f in result["files"]:
                if f["size"] > 1e6:
                    print(f"   {f['name']:<48} {f['size'] / 1e6:7.1f} MB  ({f['size'] / base_bytes:.2f}x the "
                          f"float32 base)")
            print(f"   reference: the adapter on the base in float32; the base alone agrees "
                  f"{report['reference']['base_top1']:.1%} (teacher-forced top-1)")
            if "trained_on_4bit" in report:
                print(f"   the adapter on the 4-bit NF4 base it was trained on agrees "
                      f"{report['trained_on_4bit']['top1_4bit_vs_16bit']:.1%} with it on the 16-bit base")
            for name, check in report["checks"].items():
                print(f"   {name:<8} top-1 {check['top1']:.1%} (tolerance {check['tolerance_top1']:.0%}), identical "
                      f"greedy answers {check['exact']:.0%}, shared prefix {check['prefix']:.1%} — "
                      f"{check['loaded_by']}")
            print()
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
